"""The history view: the audit log (decisions, approvals, denials, expiries, outcomes), filterable.

The filter is one input: ``tool:NAME``, ``server:NAME`` and ``session:ID`` are asked of the daemon
(exact match), any other words must appear somewhere in a row (see
:class:`~console.model.HistoryQuery`). The app fetches the rows; this widget only shows them.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Input, Static

from console.model import AuditEntry, visible

_COLUMNS = ("Time", "Event", "Tool", "Action", "Session", "Server", "Rule", "Detail")
_DETAIL_CHARS = 120

#: What each audit event means to a person, and how loudly to show it.
_EVENTS: dict[str, tuple[str, str]] = {
    "paused": ("paused", "bold"),
    "confirm_ok": ("approved", "bold"),
    "confirm_failed": ("wrong code", "bold"),
    "confirm_throttled": ("code not checked", "bold"),
    "code_reissued": ("new code", ""),
    "reopened": ("waits again", "bold"),
    "denied": ("denied", "bold"),
    "elicitation_refused": ("dialog answer refused", "bold"),
    "expired": ("expired", "bold"),
    "locked": ("locked", "bold"),
    "withdrawn": ("withdrawn", ""),
    "session_open": ("session open", "dim"),
    "session_close": ("session closed", "dim"),
    "policy": ("policy", "dim"),
}


# What the shim reported of an approved call (daemon.pending.OUTCOMES, "ran" split by its result).
_OUTCOMES = {
    "ok": ("ran", ""),
    "error": ("ran, failed", "bold"),
    "sent": ("sent to server", "dim"),
    "input_required": ("ran, asks for input", ""),
    "not_run": ("did not run", "bold"),
    "unknown": ("outcome unknown", "bold"),
}


def event_label(entry: AuditEntry) -> tuple[str, str]:
    """A short human name for the row's event, and its style."""
    if entry.event == "decision":
        return {"allow": ("allowed", ""), "deny": ("blocked", "bold")}.get(
            entry.decision, (f"decided {entry.decision}", "")
        )
    if entry.event == "outcome":
        return _OUTCOMES.get(entry.decision, (f"outcome {visible(entry.decision)}", "bold"))
    return _EVENTS.get(entry.event, (visible(entry.event), ""))


def stamp(ts: float, now: float) -> str:
    """Local time of day for today's rows; month and day too for older ones."""
    when, today = time.localtime(ts), time.localtime(now)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M:%S", when)
    return time.strftime("%m-%d %H:%M", when)


def _row(entry: AuditEntry, now: float) -> list[Text]:
    label, style = event_label(entry)
    detail = visible(entry.detail.replace("\n", " "))
    if len(detail) > _DETAIL_CHARS:
        detail = detail[: _DETAIL_CHARS - 1] + "…"
    return [
        Text(stamp(entry.ts, now), style="dim"),
        Text(label, style=style),
        Text(visible(entry.tool)),
        Text(visible(entry.action_id)),
        Text(visible(entry.session_id)),
        Text(visible(entry.server)),
        Text(visible(entry.rule)),
        Text(detail, style="dim"),
    ]


class HistoryPane(Vertical):
    """The filter, a status line and the audit rows, newest first."""

    def compose(self) -> ComposeResult:
        """Filter on top, then the table."""
        yield Input(placeholder="Filter: tool:NAME server:NAME session:ID or any words", id="history-filter")
        yield Static("", id="history-status")
        table: DataTable[Text] = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        """Set up the columns once."""
        table = self.query_one("#history-table", DataTable)
        for name in _COLUMNS:
            table.add_column(name, key=name)

    @property
    def query_text(self) -> str:
        """The filter as typed."""
        return self.query_one("#history-filter", Input).value.strip()

    def show_entries(self, entries: tuple[AuditEntry, ...], now: float) -> None:
        """Replace the rows."""
        table: DataTable[Text] = self.query_one("#history-table", DataTable)
        table.clear()
        for entry in entries:
            table.add_row(*_row(entry, now), key=str(entry.row_id))
        what = f" matching {self.query_text!r}" if self.query_text else ""
        # Content, not a str: what the user typed must not be read as markup.
        self.query_one("#history-status", Static).update(
            Content(
                visible(f"{len(entries)} audit row{'' if len(entries) == 1 else 's'}{what}, newest first")
            )
        )

    def show_error(self, reason: str) -> None:
        """The log could not be read."""
        self.query_one("#history-table", DataTable).clear()
        self.query_one("#history-status", Static).update(
            Content(visible(f"Could not read the audit log: {reason}"))
        )
