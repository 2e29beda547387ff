"""The grants view: every live grant, what it lets through, until when; ``x`` revokes one.

Widgets here never talk to the daemon; the app feeds them :class:`GrantView` from a worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, DataTable, Static

from console.model import visible


@dataclass(frozen=True, slots=True)
class GrantView:
    """One live grant, as a console sees it."""

    grant_id: str
    scope: str
    tool: str
    server: str
    session_id: str
    description: str
    created: float
    expires: float | None
    action_id: str
    uses: int
    #: The argument matches, as they read ("path under /home/me/project"); "" for none.
    arguments: str = ""


def grant_from_wire(raw: dict[str, Any]) -> GrantView:
    """A grant from the daemon's :class:`~daemon.protocol.GrantList` entry."""
    return GrantView(
        grant_id=str(raw.get("grant_id", "")),
        scope=str(raw.get("scope", "")),
        tool=str(raw.get("tool", "")),
        server=str(raw.get("server") or ""),
        session_id=str(raw.get("session_id") or ""),
        description=str(raw.get("description", "")),
        created=float(raw.get("created") or 0.0),
        expires=float(raw["expires"]) if raw.get("expires") else None,
        action_id=str(raw.get("action_id", "")),
        uses=int(raw.get("uses") or 0),
        arguments=", ".join(_match_text(m) for m in raw.get("matches") or () if isinstance(m, dict)),
    )


def _match_text(match: dict[str, Any]) -> str:
    if "under" in match:
        return f"{match.get('key')} under {match['under']}"
    return f"{match.get('key')} = {json.dumps(match.get('equals'), ensure_ascii=False)}"


def _until(grant: GrantView, now: float) -> str:
    if grant.expires is None:
        return "chat ends" if grant.scope == "chat" else "-"
    left = max(0, int(grant.expires - now))
    return f"{left // 60}m{left % 60:02d}s left"


class GrantsPane(Vertical):
    """The grants tab: a table of the live grants, or a placeholder."""

    def __init__(self) -> None:
        super().__init__()
        self._grants: tuple[GrantView, ...] = ()

    def compose(self) -> ComposeResult:
        """A placeholder and the table, in a switcher."""
        with ContentSwitcher(initial="grants-empty", id="grants-switcher"):
            yield Static(
                "No grants.\n\nPress g on a paused action to approve it for this chat, for matching\n"
                "arguments for a while, or always. Grants never let through what the policy denies.",
                id="grants-empty",
                classes="placeholder",
            )
            yield DataTable(id="grants-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        """The table's columns."""
        columns = ("grant", "scope", "tool", "arguments", "where", "until", "used", "from")
        self.query_one(DataTable).add_columns(*columns)

    @property
    def selected(self) -> GrantView | None:
        """The highlighted grant."""
        table = self.query_one(DataTable)
        if not self._grants or not 0 <= table.cursor_row < len(self._grants):
            return None
        return self._grants[table.cursor_row]

    def show_grants(self, grants: tuple[GrantView, ...], now: float | None = None) -> None:
        """Replace the rows, keeping the cursor on the same grant where it still exists."""
        now = time.time() if now is None else now
        keep = self.selected
        self._grants = grants
        table = self.query_one(DataTable)
        table.clear()
        for g in grants:
            where = f"chat {g.session_id}" if g.scope == "chat" else f"server {g.server or '-'}"
            table.add_row(
                visible(g.grant_id),
                g.scope,
                visible(g.tool),
                visible(g.arguments or "any"),
                visible(where),
                _until(g, now),
                str(g.uses),
                visible(g.action_id),
            )
        ids = [g.grant_id for g in grants]
        if keep is not None and keep.grant_id in ids:
            table.move_cursor(row=ids.index(keep.grant_id))
        self.query_one(ContentSwitcher).current = "grants-table" if grants else "grants-empty"
