"""The grant choice: approve a paused action for this call, this chat, matching arguments, or always.

:class:`GrantScreen` is a modal that answers with a :class:`GrantChoice` (or None for cancel); the
app sends it to the daemon from a worker. The argument matches offered are built from what the
human sees (:func:`candidates`): a path-like string becomes "under its directory", any other
short scalar "equals this value".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, RadioButton, RadioSet, Static

from console.model import Action, visible

#: The scopes, in the order they are offered, with how each reads.
SCOPES: tuple[tuple[str, str], ...] = (
    ("once", "Just this call"),
    ("chat", "This tool in this chat, until the chat ends"),
    ("args", "This tool with the arguments ticked below, in every chat of this server, for a time"),
    ("always", "Always: write a rule into the policy file (the change is shown first)"),
)
#: Values longer than this are not offered as a match (nobody reads them to check).
_LONGEST = 200


@dataclass(frozen=True, slots=True)
class GrantChoice:
    """What the human chose."""

    scope: str
    minutes: float = 30.0
    matches: list[dict[str, Any]] = field(default_factory=list)


def candidates(arguments_json: str) -> list[dict[str, Any]]:
    """The argument matches to offer for an action's (uncut) arguments."""
    try:
        arguments = json.loads(arguments_json)
    except ValueError:
        return []
    if not isinstance(arguments, dict):
        return []
    offered: list[dict[str, Any]] = []
    for key, value in arguments.items():
        if isinstance(value, str) and value.startswith("/") and len(value) <= _LONGEST:
            offered.append({"key": key, "under": os.path.dirname(os.path.normpath(value)) or "/"})
        elif isinstance(value, str | int | float | bool) and len(json.dumps(value)) <= _LONGEST:
            offered.append({"key": key, "equals": value})
    return offered


def describe(match: dict[str, Any]) -> str:
    """How one match reads on a checkbox."""
    if "under" in match:
        return f"{match['key']} under {match['under']}/"
    return f"{match['key']} = {json.dumps(match['equals'], ensure_ascii=False)}"


class GrantScreen(ModalScreen[GrantChoice | None]):
    """Choose how far an approval reaches."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "approve", "Approve"),
        Binding("1", "scope(0)", show=False),
        Binding("2", "scope(1)", show=False),
        Binding("3", "scope(2)", show=False),
        Binding("4", "scope(3)", show=False),
    ]

    def __init__(self, action: Action) -> None:
        super().__init__()
        self._action = action
        self._offered = [] if action.arguments_cut else candidates(action.arguments_json)
        #: The scope picked, kept here: the RadioSet learns a digit's pick only when its message is
        #: handled, and a ``y`` typed right after the digit must approve what the digit picked.
        self._scope = 0

    def compose(self) -> ComposeResult:
        """The action, the scopes, the argument matches, the duration, two buttons."""
        action = self._action
        with Vertical(id="grant-dialog"):
            yield Static(
                Content.assemble(
                    "Approve ",
                    (visible(action.tool), "bold"),
                    f" ({visible(action.action_id)}, chat {visible(action.session_id)}) for…",
                ),
                id="grant-question",
            )
            with RadioSet(id="grant-scopes"):
                for index, (_scope, label) in enumerate(SCOPES):
                    yield RadioButton(f"{index + 1}  {label}", value=index == 0)
            yield Static("Arguments that must match (3; for 4 only the = ones):", classes="grant-label")
            if not self._offered:
                yield Static("  (none to offer: cut, or not simple values)", classes="grant-label")
            ticked = any("under" in m for m in self._offered)
            for index, match in enumerate(self._offered):
                value = ("under" in match) if ticked else index == 0
                yield Checkbox(visible(describe(match)), value=value, id=f"grant-match-{index}")
            with Horizontal(id="grant-minutes-row"):
                yield Static("Minutes (scope 3): ", classes="grant-label")
                yield Input("30", id="grant-minutes", type="number")
            yield Static("", id="grant-error")
            with Horizontal(id="grant-buttons"):
                yield Button("Approve (y)", variant="warning", id="grant-yes")
                yield Button("Cancel (esc)", variant="primary", id="grant-no")

    def on_mount(self) -> None:
        """The scopes have the focus: arrows move, space picks."""
        self.query_one(RadioSet).focus()

    def action_scope(self, index: int) -> None:
        """A digit picks a scope."""
        buttons = list(self.query(RadioButton))
        buttons[index].value = True
        self._scope = index

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        """Arrows and space (or a click) pick a scope."""
        self._scope = max(event.index, 0)

    def action_cancel(self) -> None:
        """Nothing is approved."""
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Approve (with the choice, if it makes sense) or cancel."""
        if event.button.id != "grant-yes":
            self.dismiss(None)
            return
        self.action_approve()

    def action_approve(self) -> None:
        """Answer with the choice on screen, or say what is wrong with it."""
        choice = self.choice()
        if isinstance(choice, str):
            self.query_one("#grant-error", Static).update(Content.styled(choice, "$text-error"))
            return
        self.dismiss(choice)

    def choice(self) -> GrantChoice | str:
        """The choice on screen, or what is wrong with it."""
        scope = SCOPES[self._scope][0]
        ticked = [self.query_one(f"#grant-match-{i}", Checkbox).value for i in range(len(self._offered))]
        matches = [m for m, on in zip(self._offered, ticked, strict=True) if on]
        minutes = 30.0
        if scope == "args":
            if not matches:
                return "Tick at least one argument for scope 3."
            try:
                minutes = float(self.query_one("#grant-minutes", Input).value)
            except ValueError:
                return "Minutes must be a number."
            if not 0 < minutes <= 24 * 60:
                return "Minutes must be between 1 and 1440."
        if scope == "always":
            matches = [m for m in matches if "equals" in m]
        if scope in ("once", "chat"):
            matches = []
        return GrantChoice(scope, minutes, matches)
