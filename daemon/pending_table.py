"""The ``pending`` table: paused actions, open and recently closed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from daemon.database import Database


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


class PendingTable(Database):
    """The pending actions of :class:`~daemon.store.Store`."""

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


_PENDING = (
    "action_id, session_id, server, tool, params, rule, reason, created, deadline, attempts_left,"
    " status, closed_at, outcome, code_length"
)
_PENDING_COUNT = _PENDING.count(",") + 1
