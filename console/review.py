"""The review screen: tool definitions hidden from the agent until a human accepts or rejects them.

Opened with ``t`` from the main screen. On the left, every definition waiting for review (changed,
new) and every rejected one; on the right, what is flagged in the selected one and the unified diff
from the approved definition to the one the server lists now. Every text passes through
:func:`console.model.visible`: a hidden character in a description shows as ``\\uXXXX``, never raw.

``a`` accepts (after a yes/no question: accepting re-pins the definition, the tool is shown and
callable again, and its chats are told to list again); ``x`` rejects (the tool stays hidden and its
calls denied). The daemon is reached only from thread workers, as elsewhere in the console.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from console.client import ConsoleError
from console.confirm import ConfirmScreen
from console.connection import Backend
from console.model import visible
from console.pins import ToolPin, diff_lines, flags

_STATE = {"changed": "CHANGED", "new": "NEW", "rejected": "REJECTED"}
_LINE_STYLE = {"+": "$success", "-": "$error", "@": "$accent"}


class PinsLoaded(Message):
    """The pins as the daemon has them (or why they could not be read)."""

    def __init__(self, pins: tuple[ToolPin, ...], error: str = "") -> None:
        super().__init__()
        self.pins = pins
        self.error = error


class ReviewDone(Message):
    """An accept or reject came back from the daemon."""

    def __init__(self, ok: bool, text: str) -> None:
        super().__init__()
        self.ok = ok
        self.text = text


def detail_content(pin: ToolPin, names: list[str]) -> Content:
    """What the right-hand side shows of one pin: state, flags, then the diff (escaped)."""
    head = Content.assemble(
        (visible(pin.tool), "bold"),
        f" on {visible(pin.server)}  ",
        (_STATE.get(pin.state, visible(pin.state)), "bold reverse"),
        f"  review {visible(pin.review_id)}\n",
    )
    what = {
        "changed": "Its definition changed since you approved it. The agent does not see it and its "
        "calls are denied until you accept (a) or reject (x) the change.",
        "new": "A tool this server did not list before. The agent does not see it and its calls are denied "
        "until you accept (a) or reject (x) it.",
        "rejected": "You rejected this definition: it stays hidden and denied. "
        "Accept (a) if you changed your mind.",
    }.get(pin.state, "")
    parts: list[Content] = [head, Content.styled(what + "\n", "$text-muted")]
    found = flags(pin.seen, names)
    if found:
        parts.append(Content.styled("Flagged (read these parts closely):\n", "bold $warning"))
        parts += [Content.styled(f"  ⚑ {visible(flag)}\n", "$warning") for flag in found]
    else:
        parts.append(Content.styled("Nothing flagged.\n", "$text-muted"))
    if pin.cut:
        parts.append(
            Content.styled("A definition is over 64 KiB: the diff shows its beginning.\n", "$warning")
        )
    parts.append(Content("\n"))
    parts += [Content.styled(visible(line) + "\n", _LINE_STYLE.get(line[:1], "")) for line in diff_lines(pin)]
    return Content.assemble(*parts)


class ReviewScreen(Screen[None]):
    """Definitions waiting for review, with their diff and flags; accept or reject them."""

    DEFAULT_CSS = """
    #review-body { height: 1fr; }
    #review-list { width: 38; height: 1fr; border: round $primary; }
    #review-list:focus { border: round $accent; }
    #review-detail { width: 1fr; height: 1fr; border: round $primary; padding: 0 1; }
    """

    BINDINGS = [
        Binding("a", "accept", "Accept"),
        Binding("x", "reject", "Reject"),
        Binding("r", "reload", "Refresh", show=False),
        Binding("escape,t", "app.pop_screen", "Back"),
    ]

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self._backend = backend
        self._reviews: tuple[ToolPin, ...] = ()
        self._names: dict[str, list[str]] = {}

    def compose(self) -> ComposeResult:
        """The list on the left, the selected definition's flags and diff on the right."""
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="review-body"):
            yield OptionList(id="review-list")
            with VerticalScroll(id="review-detail"):
                yield Static(Content("Reading the pinned tools…"), id="review-text")
        yield Footer()

    def on_mount(self) -> None:
        """Read the pins."""
        self.sub_title = "Tool definitions waiting for review"
        self.query_one(OptionList).focus()
        self._load()

    @work(thread=True, exclusive=True, group="reviews", name="read pins")
    def _load(self) -> None:
        try:
            self.post_message(PinsLoaded(self._backend.pins()))
        except (ConsoleError, OSError) as exc:
            self.post_message(PinsLoaded((), str(exc)))

    @work(thread=True, group="reviews", name="review")
    def _review(self, review_id: str, accept: bool) -> None:
        try:
            self.post_message(ReviewDone(True, self._backend.review_tool(review_id, accept)))
        except (ConsoleError, OSError) as exc:
            self.post_message(ReviewDone(False, str(exc)))

    def on_pins_loaded(self, message: PinsLoaded) -> None:
        """Show the reviews, keeping the selection where it was if it is still there."""
        if message.error:
            self.query_one("#review-text", Static).update(Content(visible(message.error)))
            return
        self._names = {}
        for pin in message.pins:
            self._names.setdefault(pin.server, []).append(pin.tool)
        self._reviews = tuple(pin for pin in message.pins if pin.state != "pinned")
        listing = self.query_one(OptionList)
        before = listing.highlighted
        listing.clear_options()
        listing.add_options(
            Option(
                Content.assemble(
                    (f"{_STATE.get(pin.state, visible(pin.state)):9}", "bold"),
                    visible(pin.tool),
                    ("\n  " + visible(pin.server), "$text-muted"),
                ),
                id=pin.review_id or None,
            )
            for pin in self._reviews
        )
        if self._reviews:
            listing.highlighted = min(before or 0, len(self._reviews) - 1)
        self._show_selected()
        self.refresh_bindings()

    def on_review_done(self, message: ReviewDone) -> None:
        """Say what the daemon did, and read the pins again."""
        self.notify(visible(message.text), severity="information" if message.ok else "error", markup=False)
        self._load()

    @on(OptionList.OptionHighlighted)
    def _highlighted(self) -> None:
        self._show_selected()
        self.refresh_bindings()

    @property
    def selected(self) -> ToolPin | None:
        """The review under the cursor."""
        index = self.query_one(OptionList).highlighted
        return self._reviews[index] if index is not None and index < len(self._reviews) else None

    def _show_selected(self) -> None:
        pin = self.selected
        text = self.query_one("#review-text", Static)
        if pin is None:
            text.update(Content("Nothing waits for review: every tool the agents see is as you approved it."))
        else:
            text.update(detail_content(pin, self._names.get(pin.server, [])))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Accept and reject only with a review selected (reject: not one already rejected)."""
        pin = self.selected
        if action == "accept":
            return pin is not None or None
        if action == "reject":
            return (pin is not None and pin.state != "rejected") or None
        return True

    def action_accept(self) -> None:
        """Accept the selected definition, after asking."""
        pin = self.selected
        if pin is None:
            return
        question = f"Pin the new definition of {visible(pin.tool)} on {visible(pin.server)}?"
        detail = "The agent will see this definition and may call the tool again (its policy still applies)."
        if flags(pin.seen, self._names.get(pin.server, [])):
            detail += " Parts of it are flagged: read them first."
        review_id = pin.review_id

        def answered(yes: bool | None) -> None:
            if yes:
                self._review(review_id, True)

        self.app.push_screen(ConfirmScreen(question, detail, yes="Accept"), answered)

    def action_reject(self) -> None:
        """Reject the selected definition: it stays hidden and denied."""
        pin = self.selected
        if pin is not None and pin.state != "rejected":
            self._review(pin.review_id, False)

    def action_reload(self) -> None:
        """Read the pins again."""
        self._load()
