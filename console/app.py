"""The interactive approval console (Textual): ``firewall-console`` with no subcommand.

The app never touches a socket itself. A thread worker runs :meth:`Backend.watch`, which posts
:mod:`console.messages` as the daemon's state changes; deny and history requests run in thread
workers of their own (:mod:`console.workers`). :func:`build_app` makes the app for production
and for tests alike; tests and screenshots pass a :class:`~console.replay.ReplayBackend` and a
frozen clock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, TabbedContent, TabPane

from console.confirm import ConfirmScreen
from console.connection import Backend, DaemonBackend
from console.desktop import desktop_notify, notification_command
from console.flood_actions import FloodActions
from console.grant_actions import GrantActions
from console.grants_view import GrantsPane
from console.history import HistoryPane
from console.messages import (
    ArgumentsLoaded,
    Connected,
    DenyFinished,
    Disconnected,
    HistoryFailed,
    HistoryLoaded,
    PendingChanged,
    PolicyProblem,
)
from console.model import Action, DaemonState, visible
from console.pending import ActionDetail, ActionList, PendingPane
from console.review import ReviewScreen
from console.sessions import SessionsPane
from console.workers import HISTORY_ROWS as HISTORY_ROWS  # re-exported: its home before the split
from console.workers import DaemonWorkers

#: Typing in the history filter asks the daemon again after this pause.
_FILTER_DEBOUNCE = 0.3
#: How long the pending list stays highlighted after a new action arrives.
_FLASH_SECONDS = 1.5


class FirewallConsole(GrantActions, FloodActions, DaemonWorkers):
    """Pending actions with their codes, sessions and the audit log of one firewalld."""

    CSS_PATH = "console.tcss"
    TITLE = "MCP Action Firewall"
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("g", "grant", "Grant…"),
        Binding("d", "deny", "Deny"),
        Binding("D", "deny_all", "Deny all"),
        Binding("f", "fetch_arguments", "Full arguments"),
        Binding("p", "show_tab('pending')", "Pending"),
        Binding("s", "show_tab('sessions')", "Sessions"),
        Binding("h", "show_tab('history')", "History"),
        Binding("G", "show_tab('grants')", "Grants"),
        Binding("x", "revoke", "Revoke"),
        Binding("t", "review_tools", "Tools", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.time,
        desktop_notifications: bool = False,
        notifier: Callable[[str, str], object] = desktop_notify,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.desktop_notifications = desktop_notifications
        self._notifier = notifier
        #: The daemon's state as last received; None while not connected.
        self.state: DaemonState | None = None
        self.connected = False
        #: Every action id ever shown, to tell new arrivals from refreshes. None until the first state.
        self._seen: set[str] | None = None
        self._history_query: str | None = None
        self._filter_timer: Timer | None = None
        #: Policy load errors the daemon reported, oldest first.
        self.policy_problems: list[str] = []
        #: The user was told desktop notifications do not work here (told once).
        self._desktop_told = False

    def compose(self) -> ComposeResult:
        """Header, three tabs, footer."""
        yield Header(show_clock=False, icon="◆")
        with TabbedContent(initial="pending", id="tabs"):
            with TabPane("Pending", id="pending"):
                yield PendingPane()
            with TabPane("Sessions", id="sessions"):
                yield SessionsPane()
            with TabPane("History", id="history"):
                yield HistoryPane()
            with TabPane("Grants", id="grants"):
                yield GrantsPane()
        yield Footer()

    def on_mount(self) -> None:
        """Start the daemon link and the countdown."""
        self.sub_title = visible(f"connecting to {self.backend.socket_path}")
        self.query_one(ActionList).focus()
        self._link()
        self.set_interval(1.0, self._tick, name="countdown")
        if self.desktop_notifications and self._notifier is desktop_notify:
            if notification_command("", "") is None:
                self._desktop_told = True
                self._no_desktop(
                    "notify-send is not installed (Debian/Ubuntu: apt install libnotify-bin)"
                    if sys.platform != "darwin"
                    else "osascript was not found"
                )

    # -- what the workers report -------------------------------------------------------------

    @property
    def _shutting_down(self) -> bool:
        # A worker's message can arrive while the app tears its widgets down: then drop it.
        return not self.is_running

    def on_connected(self, message: Connected) -> None:
        """Subscribed: the state follows at once."""
        if self._shutting_down:
            return
        self.connected = True
        self.sub_title = visible(f"connected to {message.socket_path}")
        self.refresh_bindings()

    def on_disconnected(self, message: Disconnected) -> None:
        """No daemon: show why and when the next try is; forget codes that may be stale."""
        if self._shutting_down:
            return
        self.connected = False
        self.state = None
        self.sub_title = "firewalld not reachable, retrying"
        self.query_one(PendingPane).show_offline(message.reason, message.retry_in, message.attempt)
        self.query_one(SessionsPane).show_offline()
        self._count_tab(None)
        self.refresh_bindings()

    def on_pending_changed(self, message: PendingChanged) -> None:
        """Show the new state; ring for actions never seen before."""
        if self._shutting_down:
            return
        state = message.state
        fresh = [] if self._seen is None else [a for a in state.actions if a.action_id not in self._seen]
        self._seen = (self._seen or set()) | {a.action_id for a in state.actions}
        self.state = state
        self.query_one(PendingPane).show_actions(state.actions, self.clock())
        self.query_one(SessionsPane).show_sessions(state.sessions)
        self._count_tab(state)
        if fresh:
            self._announce(fresh)
        if message.kinds & {"pins", "connected"} and not isinstance(self.screen, ReviewScreen):
            self._count_reviews()
        if self.query_one(TabbedContent).active == "history":
            self._reload_history()
        if "grants" in message.kinds or self.query_one(TabbedContent).active == "grants":
            self._load_grants()
        self.refresh_bindings()

    def on_policy_problem(self, message: PolicyProblem) -> None:
        """A policy file does not load: say so until dismissed (its calls are being denied)."""
        if self._shutting_down:
            return
        self.policy_problems.append(message.detail)
        self.notify(
            # One visible() per line: it spells a newline out as \u000a, and a policy error has
            # one line per problem.
            "\n".join(visible(line) for line in message.detail.splitlines()),
            title="Policy file problem: calls under it are denied",
            severity="error",
            timeout=60,
            markup=False,
        )

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        """Rows for the current filter (answers to an older filter are dropped)."""
        if self._shutting_down:
            return
        if message.query == self.query_one(HistoryPane).query_text:
            self.query_one(HistoryPane).show_entries(message.entries, self.clock())

    def on_history_failed(self, message: HistoryFailed) -> None:
        """Say why the log is empty."""
        if self._shutting_down:
            return
        if message.query == self.query_one(HistoryPane).query_text:
            self.query_one(HistoryPane).show_error(message.reason)

    def on_deny_finished(self, message: DenyFinished) -> None:
        """Report the result; the list itself changes with the daemon's event."""
        if self._shutting_down:
            return
        if message.ok:
            titles = {"approve": "Approved", "grant": "Approved", "revoke": "Revoked"}
            title = titles.get(message.verb, "Denied")
            self.notify(visible(message.detail), title=title, markup=False)
        else:
            self.notify(
                visible(message.detail),
                title=visible(f"Could not {message.verb} {message.action_id}"),
                severity="error",
                markup=False,
            )

    def on_arguments_loaded(self, message: ArgumentsLoaded) -> None:
        """Show the full arguments in the detail (if their action is still selected), or why not."""
        if self._shutting_down:
            return
        if message.ok:
            self.query_one(ActionDetail).show_full(message.action_id, message.text)
        else:
            self.notify(
                visible(message.text),
                title=visible(f"Could not fetch the arguments of {message.action_id}"),
                severity="error",
                markup=False,
            )

    # -- the screen -------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._shutting_down:
            return
        self.query_one(PendingPane).tick(self.clock())

    def _count_tab(self, state: DaemonState | None) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.get_tab("pending").label = f"Pending ({len(state.actions)})" if state else "Pending"
        live = sum(1 for s in state.sessions if s.connected) if state else 0
        tabs.get_tab("sessions").label = f"Sessions ({live})" if state else "Sessions"

    def _announce(self, fresh: list[Action]) -> None:
        self.bell()
        listing = self.query_one(ActionList)
        listing.add_class("-flash")
        self.set_timer(_FLASH_SECONDS, lambda: listing.remove_class("-flash"))
        names = ", ".join(f"{visible(a.tool)} ({visible(a.server) or '-'})" for a in fresh[:3])
        more = f" and {len(fresh) - 3} more" if len(fresh) > 3 else ""
        self.notify(
            f"{names}{more} waits for approval.", title="New action", severity="warning", markup=False
        )
        if self.desktop_notifications:
            self._desktop("MCP Action Firewall", f"{names}{more} waits for approval: see firewall-console.")

    def _reload_history(self) -> None:
        text = self.query_one(HistoryPane).query_text
        self._history_query = text
        self._load_history(text)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "history":
            self._reload_history()
        if event.pane.id == "grants":
            self._load_grants()
        self.refresh_bindings()

    @on(Input.Changed, "#history-filter")
    def _filter_changed(self) -> None:
        # Wait for a pause in typing rather than asking the daemon on every key.
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(_FILTER_DEBOUNCE, self._filter_settled)

    def _filter_settled(self) -> None:
        if self.query_one(HistoryPane).query_text != self._history_query:
            self._reload_history()

    @on(Input.Submitted, "#history-filter")
    def _filter_submitted(self) -> None:
        self._reload_history()
        self.query_one("#history-table", DataTable).focus()

    # -- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Deny keys only on the pending tab, and only when there is something to deny."""
        if isinstance(self.screen, ReviewScreen) and action not in ("quit", "command_palette", "pop_screen"):
            return False  # the review screen has keys of its own; the pending tab is not on screen
        if action == "fetch_arguments":
            selected = self.query_one(ActionList).selected
            if self.query_one(TabbedContent).active != "pending" or not self.connected:
                return False
            return selected is not None and selected.arguments_cut  # shown only when it helps
        if action == "revoke":
            return self.query_one(TabbedContent).active == "grants" and self.connected
        if action in ("approve", "grant", "deny", "deny_all"):
            if self.query_one(TabbedContent).active != "pending" or not self.connected:
                return False
            if self.state is None or not self.state.actions:
                return None
        return True

    def action_show_tab(self, tab: str) -> None:
        """Switch tabs and put the focus where the keys are useful."""
        self.query_one(TabbedContent).active = tab
        target = {
            "pending": "#pending-list",
            "sessions": "#sessions-table",
            "history": "#history-table",
            "grants": "#grants-table",
        }[tab]
        self.query_one(target).focus()

    def _selected_action(self) -> Action | None:
        return self.query_one(ActionList).selected

    def action_approve(self) -> None:
        """Approve the selected action, if its chat still holds the call open (the daemon says
        so otherwise: then the code is the way). On a group row: the whole group, after asking."""
        group = self.query_one(ActionList).selected_group
        if group is not None:
            self.settle_group("approve", group)
            return
        action = self.query_one(ActionList).selected
        if action is None:
            self.notify("No action is selected.", severity="warning")
            return
        self._approve(action.action_id)

    def action_deny(self) -> None:
        """Deny the selected action (on a group row: the whole group, after asking)."""
        group = self.query_one(ActionList).selected_group
        if group is not None:
            self.settle_group("deny", group)
            return
        action = self.query_one(ActionList).selected
        if action is None:
            self.notify("No action is selected.", severity="warning")
            return
        self._deny((action.action_id,))

    def action_fetch_arguments(self) -> None:
        """Fetch the full arguments of the selected action, which the listing cut."""
        action = self.query_one(ActionList).selected
        if action is not None:
            self.notify(f"Fetching {action.arguments_bytes:,} bytes of arguments…", markup=False)
            self._fetch(action.action_id)

    @work(exclusive=True, group="ask")
    async def action_deny_all(self) -> None:
        """Deny every pending action, after asking."""
        actions = self.state.actions if self.state else ()
        if not actions:
            self.notify("Nothing is waiting for approval.")
            return
        count = f"{len(actions)} action{'' if len(actions) == 1 else 's'}"
        question = f"Deny all {count} waiting for approval?"
        detail = "The agents will be told they were denied; their codes stop working."
        if await self.push_screen_wait(ConfirmScreen(question, detail, yes="Deny all")):
            self._deny(tuple(a.action_id for a in actions))

    def action_review_tools(self) -> None:
        """Open the review of tool definitions that changed (see :mod:`console.review`)."""
        self.push_screen(ReviewScreen(self.backend))

    def action_refresh(self) -> None:
        """Re-read everything now (or try to connect now)."""
        self.backend.refresh()
        if self.query_one(TabbedContent).active == "history":
            self._reload_history()


def build_app(
    socket_path: str | None,
    *,
    backend: Backend | None = None,
    clock: Callable[[], float] = time.time,
    desktop_notifications: bool = False,
    notifier: Callable[[str, str], object] = desktop_notify,
) -> FirewallConsole:
    """The console app, for production and tests alike.

    Args:
        socket_path: firewalld's socket; ``None`` derives it from HOME like every other command.
        backend: What to talk to instead of the daemon at ``socket_path`` (tests, screenshots).
        clock: The time source for countdowns (frozen in snapshot tests).
        desktop_notifications: Also announce new actions with a desktop notification.
        notifier: What shows a desktop notification (title, body); replaced in tests.
    """
    return FirewallConsole(
        backend or DaemonBackend(socket_path),
        clock=clock,
        desktop_notifications=desktop_notifications,
        notifier=notifier,
    )


def run_app(socket_path: str | None, *, desktop_notifications: bool = False) -> int:
    """Run the console until the user quits; returns the exit status."""
    build_app(socket_path, desktop_notifications=desktop_notifications).run()
    return 0
