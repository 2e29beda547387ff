"""The pending view: the actions waiting for approval, and the one selected in detail.

:class:`ActionList` shows one two-line entry per action, newest first, with a live countdown.
:class:`ActionDetail` shows the selected action's code large enough to read across a room, the
rule that paused it, its session, and its frozen arguments as highlighted, wrapped JSON.
:class:`PendingPane` switches between the list, an empty state and the "daemon unreachable"
state. Widgets here never talk to the daemon; the app feeds them :class:`~console.model.Action`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.highlight import HighlightTheme, highlight
from textual.widgets import ContentSwitcher, Digits, OptionList, Static
from textual.widgets.option_list import Option

from console.flood import Group, entries
from console.model import Action, command_line, countdown, pretty_arguments, visible

#: Beyond this many characters the arguments are cut, with a warning: highlighting and wrapping
#: tens of MB would freeze the screen. The whole value is one `firewall-console show ID` away.
ARGUMENTS_SHOWN = 200_000
#: Under this many seconds the countdown turns to the error colour.
HURRY = 30.0


def _tries(attempts: int) -> str:
    return f"{attempts} attempt{'' if attempts == 1 else 's'} left"


def _key(row: Action | Group) -> str:
    return row.action_id if isinstance(row, Action) else row.key


def _who(action: Action) -> str:
    return visible(action.client) if action.client else f"session {action.session_id}"


class ActionList(OptionList):
    """The pending actions, newest first; two lines each, the countdown kept current by :meth:`tick`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._actions: tuple[Action, ...] = ()
        #: What the rows show: actions, and a group for a chat with many (see :mod:`console.flood`).
        self._rows: list[Action | Group] = []
        self._expanded: set[str] = set()
        self._now = 0.0

    @property
    def now(self) -> float:
        """The time the countdowns were last drawn for."""
        return self._now

    def _row(self) -> Action | Group | None:
        index = self.highlighted
        if index is None or not 0 <= index < len(self._rows):
            return None
        return self._rows[index]

    @property
    def selected(self) -> Action | None:
        """The highlighted action, if any (None on a group row)."""
        row = self._row()
        return row if isinstance(row, Action) else None

    @property
    def selected_group(self) -> Group | None:
        """The highlighted group row, if any."""
        row = self._row()
        return row if isinstance(row, Group) else None

    def toggle(self, group: Group) -> None:
        """Show or hide the actions of a group."""
        self._expanded ^= {group.session_id}
        self.show(self._actions, self._now)

    def show(self, actions: tuple[Action, ...], now: float) -> None:
        """Replace the entries, keeping the selection on the same row where it is still there."""
        keep, index = self._row(), self.highlighted
        self._expanded &= {a.session_id for a in actions}
        self._actions, self._now = actions, now
        self._rows = entries(actions, self._expanded)
        self.set_options([Option(self._prompt(r), id=_key(r)) for r in self._rows])
        if not self._rows:
            return
        ids = [_key(r) for r in self._rows]
        if keep is not None and _key(keep) in ids:
            self.highlighted = ids.index(_key(keep))
        else:
            self.highlighted = min(index or 0, len(self._rows) - 1)

    def tick(self, now: float) -> None:
        """Redraw the countdowns for the time ``now``."""
        self._now = now
        for index, row in enumerate(self._rows):
            self.replace_option_prompt_at_index(index, self._prompt(row))

    def on_resize(self) -> None:
        """Entries are laid out for the width: redo them."""
        self.tick(self._now)

    def _prompt(self, action: Action | Group) -> Content:
        width = max(30, self.scrollable_content_region.width - 2)
        if isinstance(action, Group):
            return action.prompt(width)
        left_secs = action.deadline - self._now
        # Reverse, not a colour: it stays readable on the highlighted row in every theme.
        shown = countdown(left_secs)
        clock = Content.styled(shown, "bold reverse" if left_secs < HURRY else "bold")
        tries = f"{action.attempts_left} {'try' if action.attempts_left == 1 else 'tries'} left"
        right = Content.assemble(" " * (9 - len(shown)), clock, (f"{tries:>14}", "$text-muted"))
        head = Content.assemble(
            (visible(action.tool), "bold"),
            "  ",
            visible(action.server) or "-",
            ("  rule ", "$text-muted"),
            visible(action.rule),
        )
        head = head.truncate(max(8, width - right.cell_length), ellipsis=True, pad=True)
        place = " · ".join(
            part for part in (_who(action), command_line(action.target), visible(action.cwd)) if part
        )
        foot = Content.styled("  " + place, "$text-muted").truncate(width, ellipsis=True)
        return Content.assemble(head, right, "\n", foot)


class ActionDetail(Vertical):
    """The selected action: code, what approving it means, its session and frozen arguments."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._action: Action | None = None

    def compose(self) -> ComposeResult:
        """Code row on top, then the session, then the scrollable arguments."""
        with Horizontal(id="code-row"):
            yield Digits("", id="code-digits")
            with Vertical(id="code-info"):
                yield Static(id="code-prompt")
                yield Static(id="code-meta")
                yield Static(id="code-rule")
        yield Static(id="detail-session")
        with VerticalScroll(id="arguments") as scroll:
            scroll.border_title = "Frozen arguments: exactly what will run"
            yield Static(id="arguments-json")

    def show(self, action: Action | None, now: float) -> None:
        """Show ``action`` (or nothing) as of the time ``now``."""
        same = action is not None and self._action is not None and action.action_id == self._action.action_id
        self._action = action
        if action is None:
            self.display = False
            return
        self.display = True
        self.query_one("#code-digits", Digits).update(visible(action.code))
        prompt = Content.assemble("Type this code into your chat to approve ", (visible(action.tool), "bold"))
        if action.held_until > now:
            prompt = Content.assemble(prompt, " (or press ", ("a", "bold"), " now: its chat is waiting)")
        self.query_one("#code-prompt", Static).update(prompt)
        self.query_one("#code-rule", Static).update(
            Content.assemble(
                ("Paused by ", "$text-muted"),
                visible(action.rule),
                (f": {visible(action.reason)}", "$text-muted"),
            )
        )
        self.query_one("#detail-session", Static).update(self._session_line(action))
        self.tick(now)
        if not same:  # re-highlighting large arguments on every refresh would stall the screen
            shown = (
                cut_content(action)
                if action.arguments_cut
                else arguments_content(action.arguments_json, action.action_id)
            )
            self.query_one("#arguments-json", Static).update(shown)
            self.query_one("#arguments", VerticalScroll).scroll_home(animate=False)

    def show_full(self, action_id: str, arguments_json: str) -> None:
        """Show the fetched full arguments of ``action_id``, if it is still the one shown."""
        if self._action is not None and self._action.action_id == action_id:
            self.query_one("#arguments-json", Static).update(arguments_content(arguments_json, action_id))

    def tick(self, now: float) -> None:
        """Redraw the time left."""
        action = self._action
        if action is None:
            return
        left = action.deadline - now
        self.query_one("#code-meta", Static).update(
            Content.assemble(
                ("Code ", "$text-muted"),
                (visible(action.code), "bold reverse"),
                ("  expires in ", "$text-muted"),
                (countdown(left), "$text-error bold" if left < HURRY else "bold"),
                ("  ·  ", "$text-muted"),
                _tries(action.attempts_left),
            )
        )

    @staticmethod
    def _session_line(action: Action) -> Content:
        parts: list[str | tuple[str, str]] = [("Action ", "$text-muted"), visible(action.action_id)]
        for label, value in (
            ("session", visible(action.session_id)),
            ("client", visible(action.client) or "not known yet"),
            ("server", visible(action.server) or "-"),
            ("runs", command_line(action.target)),
            ("in", visible(action.cwd)),
        ):
            if value:
                parts += [(f"  {label} ", "$text-muted"), value]
        return Content.assemble(*parts)


class _ArgumentsTheme(HighlightTheme):
    """The theme's JSON colours, minus the error style: a cut string is not a mistake to flag."""

    # ("Error",) is pygments' Token.Error: token types are tuples, so it matches the same dict key.
    STYLES = {**HighlightTheme.STYLES, ("Error",): "$text-success 90%"}


def arguments_content(arguments_json: str, action_id: str = "ID", limit: int = ARGUMENTS_SHOWN) -> Content:
    """The frozen arguments, pretty and highlighted; cut at ``limit`` characters with a warning."""
    text = pretty_arguments(arguments_json)
    if len(text) <= limit:
        return highlight(text, language="json", theme=_ArgumentsTheme)
    hidden = len(text) - limit
    return Content.assemble(
        highlight(text[:limit], language="json", theme=_ArgumentsTheme),
        "\n",
        (
            f"… {hidden:,} more characters are not shown here. "
            f"See them all with `firewall-console show {visible(action_id)}` before you approve.",
            "$text-warning bold",
        ),
    )


def cut_content(action: Action) -> Content:
    """Arguments the daemon cut from its listing: their start, then their size and hash, and how
    to see them all."""
    return Content.assemble(
        (visible(action.arguments_json, keep="\n") + "…", "$text-muted"),
        "\n\n",
        (
            f"Cut: the arguments are {action.arguments_bytes:,} bytes, "
            f"sha256 {visible(action.arguments_sha256)}. Press f to fetch them all, or see them with "
            f"`firewall-console show {visible(action.action_id)}` before you approve.",
            "$text-warning bold",
        ),
    )


class PendingPane(Vertical):
    """The pending tab: the list and the detail, or why there is nothing to show."""

    def compose(self) -> ComposeResult:
        """Three states in a switcher; the empty state first."""
        with ContentSwitcher(initial="pending-empty", id="pending-switcher"):
            yield Static(
                "Nothing is waiting for approval.\n\n"
                "When an agent calls a tool that your policy pauses, it appears here\n"
                "with the code to type into your chat.",
                id="pending-empty",
                classes="placeholder",
            )
            yield Static("Connecting to firewalld…", id="pending-offline", classes="placeholder")
            with Vertical(id="pending-main"):
                yield ActionList(id="pending-list")
                yield ActionDetail(id="pending-detail")

    @property
    def actions(self) -> ActionList:
        """The list widget."""
        return self.query_one(ActionList)

    def show_actions(self, actions: tuple[Action, ...], now: float) -> None:
        """Show the pending actions (or the empty state)."""
        switcher = self.query_one(ContentSwitcher)
        self.actions.show(actions, now)
        switcher.current = "pending-main" if actions else "pending-empty"
        self.query_one(ActionDetail).show(self.actions.selected, now)

    def show_offline(self, reason: str, retry_in: float, attempt: int) -> None:
        """Say that no daemon answers, and when the console tries again."""
        self.query_one("#pending-offline", Static).update(
            Content.assemble(
                ("firewalld is not reachable\n\n", "$text-error bold"),
                visible(reason),
                "\n\n",
                (f"Trying again in {retry_in:g} s (attempt {attempt}); press r to try now.", "$text-muted"),
            )
        )
        self.query_one(ContentSwitcher).current = "pending-offline"

    def tick(self, now: float) -> None:
        """Redraw countdowns."""
        self.actions.tick(now)
        self.query_one(ActionDetail).tick(now)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """The selection moved: show that action."""
        event.stop()
        self.query_one(ActionDetail).show(self.actions.selected, self.actions.now)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on a group row shows or hides its actions."""
        event.stop()
        group = self.actions.selected_group
        if group is not None:
            self.actions.toggle(group)
