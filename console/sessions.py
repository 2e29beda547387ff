"""The sessions view: every shim the daemon serves, what it runs, and what it has let through."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from console.model import SessionInfo, command_line, visible

_COLUMNS = (
    "Session",
    "Server",
    "State",
    "Allowed",
    "Paused",
    "Denied",
    "Client",
    "Target",
    "Working directory",
    "Policy [server section]",
)


def _row(session: SessionInfo) -> list[Text]:
    # Rich Text, never str: DataTable would read a str as markup, and these come from agents.
    muted = "" if session.connected else "dim"
    counts = (session.allowed, session.paused, session.denied)
    return [
        Text(visible(session.session_id), style=muted or "bold"),
        Text(visible(session.server) or "-", style=muted),
        Text("connected" if session.connected else "closed", style=muted or "bold"),
        *(Text(str(n), style=muted, justify="right") for n in counts),
        Text(
            visible(session.client) or "(not known yet)", style=muted or ("" if session.client else "italic")
        ),
        Text(command_line(session.target), style=muted),
        Text(visible(session.cwd), style=muted),
        Text(
            ("⚠ " if session.warnings else "") + visible(session.policy),
            style=muted or ("bold yellow" if session.warnings else ""),
        ),
    ]


class SessionsPane(Vertical):
    """A summary line and a table of sessions, connected ones first."""

    def compose(self) -> ComposeResult:
        """The summary, then the table."""
        yield Static("", id="sessions-summary")
        table: DataTable[Text] = DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        """Set up the columns once."""
        table = self.query_one("#sessions-table", DataTable)
        for name in _COLUMNS:
            table.add_column(name, key=name)

    def show_sessions(self, sessions: tuple[SessionInfo, ...]) -> None:
        """Replace the rows, keeping the cursor on the same session where it still exists."""
        table: DataTable[Text] = self.query_one("#sessions-table", DataTable)
        keep = None
        if table.row_count:
            keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for session in sessions:
            table.add_row(*_row(session), key=session.session_id)
        ids = [s.session_id for s in sessions]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), animate=False)
        live = sum(1 for s in sessions if s.connected)
        summary = Text(
            f"{live} connected session{'' if live == 1 else 's'}, {len(sessions) - live} closed"
            if sessions
            else "No session yet: sessions appear when an MCP client starts a server through the firewall."
        )
        for s in sessions:
            for warning in s.warnings if s.connected else ():
                summary.append(f"\n⚠ {visible(s.session_id)}: {visible(warning)}", style="bold yellow")
        self.query_one("#sessions-summary", Static).update(summary)

    def show_offline(self) -> None:
        """No daemon: nothing known."""
        self.query_one("#sessions-table", DataTable).clear()
        self.query_one("#sessions-summary", Static).update("firewalld is not reachable.")
