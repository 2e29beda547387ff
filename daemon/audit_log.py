"""The audit log: the ``audit`` table and the spool in front of it.

Audit rows are first appended to a spool file next to the database, one JSON line each, with one
``write`` per batch of decisions: a SQLite commit costs an allowed call a B-tree insert, a 4 KiB
WAL frame and eight lock calls, the spool one system call. :meth:`AuditLog.ingest` moves the rows
into the ``audit`` table in bulk (the daemon calls it every second, after every few hundred rows,
and before any read of the log) and empties the spool; a daemon that died in between finds the
rows there at its next start. A row's id is given when it is spooled, so a row that is ingested
twice (a crash between the commit and the truncation) is still one row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import stat
import time
from typing import Any

from daemon.database import Database

log = logging.getLogger("firewalld")

#: The columns of an audit row after its id, in the spool's and the table's order.
_AUDIT_COLUMNS = "ts, event, session_id, server, tool, action_id, decision, rule, detail"
#: An audit row as spooled: its id, then those columns.
AuditRow = tuple[Any, ...]


class AuditLog(Database):
    """The audit rows of :class:`~daemon.store.Store`: appended, ingested, read and pruned."""

    _spool_path: str
    _spool: int
    _spooled: list[AuditRow]
    _cut: bool
    _next_id: int

    def audit(
        self,
        event: str,
        *,
        session_id: str | None = None,
        server: str | None = None,
        tool: str | None = None,
        action_id: str | None = None,
        decision: str | None = None,
        rule: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one audit row: to the open transaction's, or to the spool at once."""
        row = (time.time(), event, session_id, server, tool, action_id, decision, rule, detail)
        if self._tx is not None:
            self._tx.rows.append(row)
        else:
            self._spool_rows([row])

    def _spool_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Give the rows their ids and append them to the spool in one write.

        Raises:
            OSError: the write failed or was short (a full disk), or the database has not taken
                rows for so long that :data:`MAX_SPOOLED` wait: nothing may be forwarded.
        """
        if len(self._spooled) >= MAX_SPOOLED:
            raise OSError(f"{len(self._spooled)} audit rows are waiting for the database, which takes none")
        first = self._next_id
        numbered = [(first + i, *row) for i, row in enumerate(rows)]
        data = "".join(map(_line, numbered)).encode()
        if self._cut:
            data = b"\n" + data  # after a short write: never glue a row to a cut-off line
        written = os.write(self._spool, data)
        if written != len(data):
            self._cut = True
            os.ftruncate(self._spool, os.fstat(self._spool).st_size - written)  # take it back out
            raise OSError(f"short write to {self._spool_path} (is the disk full?)")
        self._cut = False
        self._next_id = first + len(rows)
        self._spooled += numbered

    @property
    def spooled(self) -> int:
        """Audit rows in the spool that :meth:`ingest` has not yet moved into the table."""
        return len(self._spooled)

    def ingest(self) -> None:
        """Move the spooled audit rows into the table, then empty the spool.

        Raises:
            sqlite3.Error: the database failed; the rows stay spooled (and in memory) for the
                next try.
        """
        if not self._spooled:
            return
        if self._tx is not None:
            raise RuntimeError("ingest() inside a transaction")
        self._insert_audit(self._spooled)
        os.ftruncate(self._spool, 0)
        self._spooled = []

    def _insert_audit(self, rows: list[AuditRow]) -> None:
        """Insert rows in one transaction. A row that SQLite cannot take as it is (a lone surrogate
        in a tool name, an integer over 64 bits in a row recovered from the spool) goes in with
        those values made printable; only a failure of the database itself is raised."""
        self.db.execute("BEGIN")
        try:
            try:
                self.db.executemany(_INGEST, rows)
            except _ROW_ERRORS:
                self.db.execute("ROLLBACK")
                self.db.execute("BEGIN")
                for row in rows:
                    try:
                        self.db.execute(_INGEST, row)
                    except _ROW_ERRORS:
                        self.db.execute(_INGEST, tuple(map(_storable, row)))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _recover_spool(self) -> None:
        """Ingest what a daemon that stopped without ingesting left in the spool, in chunks;
        lines that are not audit rows (cut short by a full disk or a power cut) are kept aside
        in ``audit.spool.bad``."""
        if not os.fstat(self._spool).st_size:
            return
        rows: list[AuditRow] = []
        count = bad = 0
        aside = self._spool_path + ".bad"
        with os.fdopen(os.dup(self._spool), "rb") as spool, contextlib.ExitStack() as stack:
            spool.seek(0)
            for line in spool:
                row = _parse_line(line)
                if row is not None:
                    rows.append(row)
                    if len(rows) == 10_000:
                        self._insert_audit(rows)
                        count += len(rows)
                        rows = []
                elif line.strip():
                    if not bad:
                        mode = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                        out = stack.enter_context(open(os.open(aside, mode, 0o600), "ab"))  # noqa: SIM115
                    out.write(line if line.endswith(b"\n") else line + b"\n")
                    bad += 1
            self._insert_audit(rows)
            count += len(rows)
        if bad:
            log.warning("the audit spool had %d unreadable line(s); kept in %s", bad, aside)
        os.ftruncate(self._spool, 0)
        if count:
            log.info("moved %d audit row(s) left in the spool into the log", count)

    def last_lease_seq(self, session_id: str, window: int) -> int:
        """The highest ``seq`` of the session's leased calls (audit ``action_id`` ``lease:SEQ``)
        among the last ``window`` rows, spooled ones included; 0 if none."""
        found = [int(row[6][6:]) for row in self._spooled if row[3] == session_id and _is_lease(row[6])]
        (last,) = self.db.execute("SELECT MAX(id) FROM audit").fetchone()
        rows = self.db.execute(
            "SELECT action_id FROM audit WHERE id > ? AND session_id = ? AND action_id LIKE 'lease:%'",
            ((last or 0) - window, session_id),
        )
        found += [int(a[6:]) for (a,) in rows if _is_lease(a)]
        return max(found, default=0)

    def query_audit(
        self,
        limit: int,
        session_id: str | None,
        server: str | None,
        tool: str | None,
        *,
        event: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Newest audit rows first, optionally filtered (the spool ingested first)."""
        self.ingest()
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("session_id", session_id),
            ("server", server),
            ("tool", tool),
            ("event", event),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        sql = "SELECT id, ts, event, session_id, server, tool, action_id, decision, rule, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        cur = self.db.execute(sql, (*args, max(1, min(limit, 10_000))))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def prune_audit(self, older_than: float, keep_rows: int, keep_security_rows: int | None = None) -> int:
        """Delete audit rows older than the timestamp; then all but the newest ``keep_rows``
        routine rows (see :data:`ROUTINE`) and all but the newest ``keep_security_rows`` others.

        The two kinds are counted apart, so no number of allowed calls can push out the rows
        of an approval (its pause, confirm and outcome), a denial or a wrong code.
        """
        self.ingest()
        return self.delete_audit(older_than, self.audit_cuts(keep_rows, keep_security_rows))

    def audit_cuts(self, keep_rows: int, keep_security_rows: int | None) -> list[tuple[str, int]]:
        """Per kind of row, the id below which its rows are over their limit. Counting walks up to
        millions of rows (0.3 s for two million), so this reads on a connection of its own and is
        safe to call from another thread: WAL readers never block the writer."""
        cuts: list[tuple[str, int]] = []
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as other:
            for kind, keep in ((ROUTINE, keep_rows), (f"NOT ({ROUTINE})", keep_security_rows)):
                if keep is None:
                    continue
                # The newest rows walk ids backwards and stop at the keep-th of the kind.
                sql = f"SELECT id FROM audit WHERE {kind} ORDER BY id DESC LIMIT 1 OFFSET ?"
                row = other.execute(sql, (keep - 1,)).fetchone()
                if row is not None:
                    cuts.append((kind, int(row[0])))
        return cuts

    def delete_audit(self, older_than: float, cuts: list[tuple[str, int]]) -> int:
        """Delete rows older than the timestamp, and rows of each kind below its cut (from
        :meth:`audit_cuts`)."""
        deleted = self._write(
            "DELETE FROM audit WHERE id < COALESCE("
            "(SELECT id FROM audit WHERE ts >= ? ORDER BY id LIMIT 1), (SELECT MAX(id) + 1 FROM audit))",
            (older_than,),
        ).rowcount
        for kind, cut in cuts:
            deleted += self._write(f"DELETE FROM audit WHERE id < ? AND {kind}", (cut,)).rowcount
        return deleted


#: The audit rows that anyone may cause cheaply and in bulk, pruned apart from (and before) the
#: rows of pauses, confirms, wrong codes, denials, outcomes, expiries and withdrawals.
ROUTINE = "((event = 'decision' AND decision = 'allow') OR event IN ('session_open', 'session_close'))"
#: Audit rows that may wait in the spool while the database refuses them; past this, batches
#: fail (their calls are refused) rather than memory growing without bound.
MAX_SPOOLED = 100_000
#: What a single row can make SQLite's binding raise (the database's own failures are sqlite3.Error).
_ROW_ERRORS = (ValueError, OverflowError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
_INGEST = f"INSERT OR IGNORE INTO audit (id, {_AUDIT_COLUMNS}) VALUES ({', '.join('?' * 10)})"
_encode_row = json.JSONEncoder(separators=(",", ":")).encode  # ASCII: a lone surrogate is escaped


def _is_lease(action_id: object) -> bool:
    return isinstance(action_id, str) and action_id.startswith("lease:") and action_id[6:].isdigit()


def _line(row: AuditRow) -> str:
    return _encode_row(row) + "\n"


def _parse_line(line: bytes) -> AuditRow | None:
    """A spool line as a row, or None if it is not one."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if (
        isinstance(row, list)
        and len(row) == 10
        and type(row[0]) is int
        and all(v is None or type(v) in (str, int, float) for v in row)
    ):
        return tuple(row)
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)
    return value


def _open_spool(path: str) -> int:
    """Open (or create) the spool and lock it: one daemon per state directory, whatever its socket.

    Raises:
        StoreBusy: another firewalld holds it.
        OSError: it is not a regular file, or cannot be opened.
    """
    # O_NONBLOCK: a FIFO planted at the path must not hang the open (it is refused just below);
    # on a regular file the flag changes nothing.
    fd = os.open(
        path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600
    )
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(
                f"another firewalld is using {os.path.dirname(path)} (run one daemon per state directory)"
            ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class StoreBusy(Exception):
    """Another daemon holds the state directory."""
