"""The approval-flood view: a chat with many actions waiting is shown as one group row.

:func:`entries` turns the pending actions into what the list shows: each action on its own, except
that a chat (session) with more than :data:`GROUP_OVER` actions waiting becomes one
:class:`Group` row (its actions follow it only while it is expanded with Enter). ``a`` and ``d``
on a group row approve or deny every action of the group, after one confirmation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from textual.content import Content

from console.model import Action, visible

#: A chat with more actions waiting than this is grouped.
GROUP_OVER = 3


@dataclass(frozen=True, slots=True)
class Group:
    """The actions waiting in one chat, shown as one row."""

    session_id: str
    actions: tuple[Action, ...]
    expanded: bool = False

    @property
    def key(self) -> str:
        """The row's id in the list."""
        return f"group:{self.session_id}"

    def prompt(self, width: int) -> Content:
        """Two lines: the chat and the count, then which tools."""
        first = self.actions[0]
        who = visible(first.client) if first.client else f"session {visible(self.session_id)}"
        sign = "▾" if self.expanded else "▸"
        head = Content.assemble(
            (f"{sign} {len(self.actions)} actions waiting", "bold"),
            f"  {visible(first.server) or '-'}  ",
            (who, "$text-muted"),
        ).truncate(width, ellipsis=True)
        counts = Counter(a.tool for a in self.actions)
        tools = ", ".join(f"{visible(t)} ×{n}" for t, n in counts.most_common())
        hint = "  Enter: show them · a: approve all · d: deny all  "
        foot = Content.assemble(("  " + tools, "$text-warning"), (hint, "$text-muted")).truncate(
            width, ellipsis=True
        )
        return Content.assemble(head, "\n", foot)


def entries(actions: tuple[Action, ...], expanded: set[str]) -> list[Action | Group]:
    """The list's rows, newest first: groups where they are due, each at its newest action's place."""
    by_session: dict[str, list[Action]] = {}
    for action in actions:
        by_session.setdefault(action.session_id, []).append(action)
    rows: list[Action | Group] = []
    placed: set[str] = set()
    for action in actions:
        mine = by_session[action.session_id]
        if len(mine) <= GROUP_OVER:
            rows.append(action)
            continue
        if action.session_id in placed:
            continue
        placed.add(action.session_id)
        group = Group(action.session_id, tuple(mine), action.session_id in expanded)
        rows.append(group)
        if group.expanded:
            rows.extend(mine)
    return rows
