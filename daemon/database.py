"""What the tables of :class:`~daemon.store.Store` share: the one SQLite connection and its writes.

One connection, used only from the daemon's event-loop thread. Every write that must precede a
forwarded call is on disk before the daemon answers the shim (``synchronous=NORMAL`` in WAL
survives a crash of the process; a power cut can lose the last transactions, not corrupt the file).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.store import _Transaction


class Database:
    """The connection and the open transaction (set up by :class:`~daemon.store.Store`)."""

    db: sqlite3.Connection
    path: str
    _tx: _Transaction | None

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run a write, beginning the open transaction's SQLite part if this is its first."""
        tx = self._tx
        if tx is not None and not tx.begun:
            self.db.execute("BEGIN")
            tx.begun = True
        return self.db.execute(sql, params)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """A write to a table another module owns (``daemon/pins.py``), in the open transaction if any."""
        return self._write(sql, params)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file. Safe to call from another thread: it opens its own
        connection, and a PASSIVE checkpoint never blocks the writer."""
        with sqlite3.connect(self.path, timeout=5) as other:
            other.execute("PRAGMA wal_checkpoint(PASSIVE)")
        # contextlib's "with" on a connection commits but does not close it.
        other.close()
