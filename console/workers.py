"""The console's workers: the only code that reaches the daemon.

A base class of :class:`console.app.FirewallConsole`. Each worker runs in a thread, calls the
:class:`~console.connection.Backend` and posts what it got as :mod:`console.messages`, which the
app handles on its own thread.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.worker import get_current_worker

from console.client import ConsoleError
from console.connection import Backend
from console.messages import ArgumentsLoaded, DenyFinished, Disconnected, HistoryFailed, HistoryLoaded
from console.model import HistoryQuery

#: How many audit rows the history view asks for.
HISTORY_ROWS = 300


class DaemonWorkers(App[None]):
    """The thread workers of the console app, and how it says desktop notifications failed."""

    backend: Backend
    _notifier: Callable[[str, str], object]
    _desktop_told: bool

    @work(thread=True, exclusive=True, group="link", name="daemon link")
    def _link(self) -> None:
        stop = get_current_worker().cancelled_event
        attempt = 0
        while not stop.is_set():
            try:
                self.backend.watch(self.post_message, stop)
                return
            except Exception as exc:  # a bug must not kill the live view: report it, start over
                attempt += 1
                self.post_message(Disconnected(f"unexpected error: {exc!r}", 5.0, attempt))
                stop.wait(5.0)

    @work(thread=True, exclusive=True, group="pins", name="count reviews")
    def _count_reviews(self) -> None:
        try:
            waiting = sum(pin.under_review for pin in self.backend.pins())
        except (ConsoleError, OSError):
            return  # the live view says when the daemon is away
        if waiting:
            text = f"{waiting} tool definition(s) changed or new, hidden from the agent: press t to review."
            self.call_from_thread(self.notify, text, severity="warning", markup=False)

    @work(thread=True, group="deny", name="approve")
    def _approve(self, action_id: str) -> None:
        try:
            self.post_message(DenyFinished(action_id, True, self.backend.approve(action_id), "approve"))
        except (ConsoleError, OSError) as exc:
            self.post_message(DenyFinished(action_id, False, str(exc), "approve"))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(DenyFinished(action_id, False, f"unexpected error: {exc!r}", "approve"))

    @work(thread=True, group="deny", name="deny")
    def _deny(self, action_ids: tuple[str, ...]) -> None:
        for action_id in action_ids:
            try:
                self.post_message(DenyFinished(action_id, True, self.backend.deny(action_id)))
            except (ConsoleError, OSError) as exc:
                self.post_message(DenyFinished(action_id, False, str(exc)))
            except Exception as exc:  # reported on screen, never as a traceback
                self.post_message(DenyFinished(action_id, False, f"unexpected error: {exc!r}"))

    @work(thread=True, exclusive=True, group="arguments", name="full arguments")
    def _fetch(self, action_id: str) -> None:
        try:
            self.post_message(ArgumentsLoaded(action_id, True, self.backend.arguments(action_id)))
        except (ConsoleError, OSError) as exc:
            self.post_message(ArgumentsLoaded(action_id, False, str(exc)))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(ArgumentsLoaded(action_id, False, f"unexpected error: {exc!r}"))

    @work(thread=True, exclusive=True, group="history", name="history")
    def _load_history(self, text: str) -> None:
        try:
            entries = self.backend.history(HistoryQuery.parse(text), HISTORY_ROWS)
        except (ConsoleError, OSError) as exc:
            self.post_message(HistoryFailed(str(exc), text))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(HistoryFailed(f"unexpected error: {exc!r}", text))
        else:
            self.post_message(HistoryLoaded(entries, text))

    @work(thread=True, group="desktop", name="desktop notification")
    def _desktop(self, title: str, body: str) -> None:
        try:
            shown = self._notifier(title, body)
        except Exception:  # a desktop without notifications must not disturb the console
            shown = False
        if shown is False and not self._desktop_told:
            self._desktop_told = True  # said once, not at every action
            self.call_from_thread(self._no_desktop, "the notification command failed")

    def _no_desktop(self, why: str) -> None:
        self.notify(
            f"--desktop-notify: {why}; new actions are announced in this window only.",
            title="No desktop notifications",
            severity="warning",
            timeout=15,
            markup=False,
        )
