"""The daemon's SQLite file (pending actions, sessions, the audit log) and the audit spool.

One connection, used only from the daemon's event-loop thread. Every write that must precede a
forwarded call is on disk before the daemon answers the shim (``synchronous=NORMAL`` in WAL
survives a crash of the process; a power cut can lose the last transactions, not corrupt the file).

Audit rows are first appended to a spool file next to the database, one JSON line each, with one
``write`` per batch of decisions: a SQLite commit costs an allowed call a B-tree insert, a 4 KiB
WAL frame and eight lock calls, the spool one system call. :meth:`Store.ingest` moves the rows
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
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,          -- decision | paused | confirm_ok | confirm_failed | denied | expired
                                  -- | locked | withdrawn | outcome | session_open | session_close | policy
    session_id TEXT,
    server TEXT,
    tool TEXT,
    action_id TEXT,
    decision TEXT,
    rule TEXT,
    detail TEXT
);
-- No index on ts: ids grow with time, so pruning by age walks ids (and an index would cost every
-- decision a second B-tree update).
DROP INDEX IF EXISTS audit_ts;
CREATE TABLE IF NOT EXISTS pending (
    action_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    server TEXT,
    tool TEXT NOT NULL,
    params BLOB NOT NULL,        -- the frozen tools/call params (canonical JSON)
    code_mac BLOB NOT NULL,      -- always empty: codes live in the daemon's memory only
    code_sealed BLOB NOT NULL,   -- (kept so that older databases open unchanged)
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    deadline REAL NOT NULL,
    attempts_left INTEGER NOT NULL,
    status TEXT NOT NULL,        -- pending | approved | denied | expired | locked | withdrawn
    closed_at REAL
    -- added by _migrate(): outcome TEXT (what became of an approved call: sent | ran | not_run |
    -- unknown) and code_length INTEGER
);
CREATE INDEX IF NOT EXISTS pending_session ON pending (session_id, status);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL,
    server TEXT,
    config_path TEXT,
    target TEXT,
    cwd TEXT,
    pid INTEGER,
    client TEXT,
    created REAL NOT NULL,
    closed REAL
);
"""


log = logging.getLogger("firewalld")

#: The columns of an audit row after its id, in the spool's and the table's order.
_AUDIT_COLUMNS = "ts, event, session_id, server, tool, action_id, decision, rule, detail"
#: An audit row as spooled: its id, then those columns.
AuditRow = tuple[Any, ...]


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


@dataclass(frozen=True, slots=True)
class PendingRow:
    """One pending (or recently closed) action as stored."""

    action_id: str
    session_id: str
    server: str | None
    tool: str
    params: bytes
    rule: str
    reason: str
    created: float
    deadline: float
    attempts_left: int
    status: str
    closed_at: float | None
    #: What became of the call once approved: ``sent`` (the shim sent it to the server), ``ran``
    #: (the server answered), ``not_run``, ``unknown`` (sent, never answered); None before.
    outcome: str | None = None
    #: Digits in the action's code (the code itself is never stored).
    code_length: int = 6


class Store:
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

    def close(self) -> None:
        """Ingest the spool, checkpoint and close."""
        try:
            self.ingest()
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
            os.close(self._spool)

    # -- audit -------------------------------------------------------------------------------

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

    # -- pending actions ---------------------------------------------------------------------

    def insert_pending(self, row: PendingRow) -> None:
        """Store a new pending action."""
        self._write(
            f"INSERT INTO pending ({_PENDING}, code_mac, code_sealed)"
            f" VALUES ({', '.join('?' * _PENDING_COUNT)}, x'', x'')",
            (
                row.action_id,
                row.session_id,
                row.server,
                row.tool,
                row.params,
                row.rule,
                row.reason,
                row.created,
                row.deadline,
                row.attempts_left,
                row.status,
                row.closed_at,
                row.outcome,
                row.code_length,
            ),
        )

    def pending_of_session(self, session_id: str, since: float) -> list[PendingRow]:
        """The session's open actions and those closed after ``since`` (to explain a stale code)."""
        cur = self.db.execute(
            f"SELECT {_PENDING} FROM pending WHERE session_id = ? AND (status = 'pending' OR closed_at >= ?)",
            (session_id, since),
        )
        return [PendingRow(*row) for row in cur.fetchall()]

    def open_pending(self) -> list[PendingRow]:
        """Every open action, newest first."""
        cur = self.db.execute(
            f"SELECT {_PENDING} FROM pending WHERE status = 'pending' ORDER BY created DESC"
        )
        return [PendingRow(*row) for row in cur.fetchall()]

    def get_pending(self, action_id: str) -> PendingRow | None:
        """One action by id."""
        row = self.db.execute(f"SELECT {_PENDING} FROM pending WHERE action_id = ?", (action_id,)).fetchone()
        return PendingRow(*row) if row else None

    def close_pending(self, action_id: str, status: str) -> bool:
        """Close an open action; False if it was not open any more (so two closers cannot both win).

        An action closed other than approved can never run: its frozen params are dropped at once
        (the audit keeps their start), so they stop counting against ``max_paused_bytes``.
        """
        cur = self._write(
            "UPDATE pending SET status = ?, closed_at = ?,"
            " params = CASE WHEN ? = 'approved' THEN params ELSE x'' END"
            " WHERE action_id = ? AND status = 'pending'",
            (status, time.time(), status, action_id),
        )
        return cur.rowcount == 1

    def paused_bytes(self) -> int:
        """Bytes of frozen params held: open actions, and approved ones not yet forgotten."""
        (total,) = self.db.execute("SELECT COALESCE(SUM(LENGTH(params)), 0) FROM pending").fetchone()
        return int(total)

    def set_attempts(self, action_id: str, attempts_left: int) -> None:
        """Record a failed attempt against an open action."""
        self._write("UPDATE pending SET attempts_left = ? WHERE action_id = ?", (attempts_left, action_id))

    def sessions_with_open_actions(self) -> list[str]:
        """Ids of sessions that have actions waiting."""
        cur = self.db.execute("SELECT DISTINCT session_id FROM pending WHERE status = 'pending'")
        return [row[0] for row in cur.fetchall()]

    def due_for_expiry(self, now: float) -> list[PendingRow]:
        """Open actions whose deadline has passed."""
        cur = self.db.execute(
            f"SELECT {_PENDING} FROM pending WHERE status = 'pending' AND deadline <= ?", (now,)
        )
        return [PendingRow(*row) for row in cur.fetchall()]

    def prune_pending(self, older_than: float) -> list[str]:
        """Forget closed actions long gone (their trace stays in the audit log); returns their ids."""
        gone = [
            row[0]
            for row in self.db.execute(
                "SELECT action_id FROM pending WHERE status != 'pending' AND closed_at < ?", (older_than,)
            )
        ]
        if gone:
            self._write("DELETE FROM pending WHERE status != 'pending' AND closed_at < ?", (older_than,))
        return gone

    def set_outcome(self, action_id: str, outcome: str) -> str | None:
        """Record what became of an approved call; returns the outcome it had before (None also when
        the action is not approved).

        Outcomes only move forward: ``sent``, ``input_required`` (a round of the call is over, the
        next one may be ``sent`` again), then ``ran``, ``not_run`` or ``unknown``, which are final.
        A record that arrives twice (re-sent after a reconnect) changes nothing.
        """
        row = self.db.execute(
            "SELECT outcome FROM pending WHERE action_id = ? AND status = 'approved'", (action_id,)
        ).fetchone()
        if row is None:
            return None
        before: str | None = row[0]
        if before is None or (before != outcome and before in ("sent", "input_required")):
            self._write("UPDATE pending SET outcome = ? WHERE action_id = ?", (outcome, action_id))
        return before

    def reopen_pending(self, action_id: str) -> bool:
        """Make an approved action that never ran wait for approval again; False if it did not qualify."""
        cur = self._write(
            "UPDATE pending SET status = 'pending', closed_at = NULL, outcome = NULL"
            " WHERE action_id = ? AND status = 'approved' AND (outcome IS NULL OR outcome = 'not_run')",
            (action_id,),
        )
        return cur.rowcount == 1

    def approved_without_outcome(self, session_id: str) -> list[PendingRow]:
        """Approved actions of a session of which nothing is known since: not even that they were sent."""
        cur = self.db.execute(
            f"SELECT {_PENDING} FROM pending"
            " WHERE session_id = ? AND status = 'approved' AND outcome IS NULL",
            (session_id,),
        )
        return [PendingRow(*row) for row in cur.fetchall()]

    def wipe_code_material(self) -> int:
        """Blank the MACs and sealed codes that databases of older versions kept (see daemon.codes)."""
        cur = self._write(
            "UPDATE pending SET code_mac = x'', code_sealed = x''"
            " WHERE length(code_mac) OR length(code_sealed)"
        )
        return cur.rowcount

    # -- sessions ----------------------------------------------------------------------------

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


_PENDING = (
    "action_id, session_id, server, tool, params, rule, reason, created, deadline, attempts_left,"
    " status, closed_at, outcome, code_length"
)
_PENDING_COUNT = _PENDING.count(",") + 1


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database made by an older version up to this schema (idempotent)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(pending)")}
    if "outcome" not in columns:
        db.execute("ALTER TABLE pending ADD COLUMN outcome TEXT")
    if "code_length" not in columns:
        db.execute("ALTER TABLE pending ADD COLUMN code_length INTEGER NOT NULL DEFAULT 6")
    if "counts" not in {row[1] for row in db.execute("PRAGMA table_info(sessions)")}:
        # A session's console counters (allowed, paused, denied, flood refusals) as a JSON list.
        db.execute("ALTER TABLE sessions ADD COLUMN counts TEXT")


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
