"""The ``sessions`` table: each shim's session, so that it can be resumed after a daemon restart."""

from __future__ import annotations

import json
import sqlite3
import time

from daemon.database import Database


class SessionTable(Database):
    """The sessions of :class:`~daemon.store.Store`."""

    def insert_session(
        self,
        session_id: str,
        token_hash: bytes,
        server: str | None,
        config_path: str | None,
        target: list[str] | None,
        cwd: str,
        pid: int,
    ) -> None:
        """Remember a new session (so it can be resumed after a daemon restart)."""
        self._write(
            "INSERT INTO sessions (session_id, token_hash, server, config_path, target, cwd, pid, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, token_hash, server, config_path, json.dumps(target or []), cwd, pid, time.time()),
        )

    def find_session(self, token_hash: bytes) -> sqlite3.Row | None:
        """The session that a resume token belongs to, if any."""
        self.db.row_factory = sqlite3.Row
        try:
            row: sqlite3.Row | None = self.db.execute(
                "SELECT * FROM sessions WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        finally:
            self.db.row_factory = None
        return row

    def session_pid(self, session_id: str) -> int | None:
        """The pid of the shim that last held the session."""
        row = self.db.execute("SELECT pid FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0]) if row and row[0] else None

    def set_session_pid(self, session_id: str, pid: int) -> None:
        """Record the pid of the shim that resumed the session."""
        self._write("UPDATE sessions SET pid = ?, closed = NULL WHERE session_id = ?", (pid, session_id))

    def set_session_client(self, session_id: str, client: str) -> None:
        """Record who the MCP client is."""
        self._write("UPDATE sessions SET client = ? WHERE session_id = ?", (client, session_id))

    def save_session_counts(self, counts: list[tuple[str, list[int]]]) -> None:
        """Store sessions' counters (so a daemon restart does not reset them in the console)."""
        for session_id, values in counts:
            self._write(
                "UPDATE sessions SET counts = ? WHERE session_id = ?", (json.dumps(values), session_id)
            )

    def close_session(self, session_id: str) -> None:
        """Mark a session closed (its shim went away)."""
        self._write("UPDATE sessions SET closed = ? WHERE session_id = ?", (time.time(), session_id))
