"""The daemon's SQLite file (pending actions, sessions, the audit log) and the audit spool.

:class:`Store` opens them and is composed of a class per table: :mod:`daemon.database` holds the
connection and its writes, :mod:`daemon.schema` the schema, :mod:`daemon.audit_log` the audit log
and its spool, :mod:`daemon.pending_table` the paused actions and :mod:`daemon.session_table` the
sessions.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from daemon.audit_log import MAX_SPOOLED, ROUTINE, AuditLog, AuditRow, StoreBusy, _open_spool
from daemon.pending_table import PendingRow, PendingTable
from daemon.schema import SCHEMA, _migrate
from daemon.session_table import SessionTable

__all__ = ["MAX_SPOOLED", "ROUTINE", "SCHEMA", "AuditRow", "PendingRow", "Store", "StoreBusy"]


class _Transaction:
    """``with store.transaction():`` (a class rather than a ``@contextmanager`` generator: it is
    entered for every batch a shim sends, and a generator costs a microsecond more).

    SQLite's transaction begins at the first write (an allowed call writes only an audit row), and
    the batch's audit rows are spooled, in one write, before it commits: a crash in between leaves
    a row that tells of a change that did not happen, never a change that no row tells of.
    """

    __slots__ = ("_store", "begun", "rows")

    def __init__(self, store: Store) -> None:
        self._store = store
        self.begun = False
        self.rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> None:
        if self._store._tx is not None:
            raise RuntimeError("transactions do not nest")
        self._store._tx = self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        store = self._store
        store._tx = None
        db = store.db
        if kind is None:
            try:
                if self.rows:
                    store._spool_rows(self.rows)
            except BaseException:
                if self.begun:
                    db.execute("ROLLBACK")
                raise
            if self.begun:
                db.execute("COMMIT")
        elif self.begun:
            db.execute("ROLLBACK")


class Store(AuditLog, PendingTable, SessionTable):
    """Typed access to the database file."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        # Checkpoints (which fsync) run from housekeeping on a thread of their own, not inside
        # whichever decision happened to fill the WAL: see checkpoint().
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.executescript(SCHEMA)
        _migrate(self.db)
        self.path = path
        self._tx: _Transaction | None = None
        self._spool_path = os.path.join(os.path.dirname(os.path.abspath(path)), "audit.spool")
        self._spool = _open_spool(self._spool_path)
        self._spooled: list[AuditRow] = []  # in the spool, not yet in the table
        self._cut = False  # the last write to the spool was short
        try:
            self._recover_spool()
        except BaseException:
            os.close(self._spool)
            self.db.close()
            raise
        (last,) = self.db.execute("SELECT MAX(id) FROM audit").fetchone()
        self._next_id = (last or 0) + 1

    def transaction(self) -> _Transaction:
        """One transaction around a batch of writes: committed on success, rolled back on error."""
        return _Transaction(self)

    def close(self) -> None:
        """Ingest the spool, checkpoint and close."""
        try:
            self.ingest()
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
            os.close(self._spool)
