"""Pending actions: a paused call, its frozen params, its code, its deadline and its attempts.

A code approves one action of one session, once, before its deadline. A wrong code (or a stale
one: expired, denied, already used) is counted against the open actions *of the same session
only*; when an action runs out of attempts it is locked. Every change is audited before the
answer that depends on it leaves the daemon.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass

from daemon.codes import CodeBook
from daemon.store import PendingRow, Store

#: How long a closed action is remembered, to tell "expired" or "already used" from "wrong".
_REMEMBER = 3600.0

_STALE_MESSAGES = {
    "approved": "That code was already used: the action it approved has run. Codes work once.",
    "denied": "The user denied this action in the firewall console. It will not run; do not retry.",
    "expired": "That code has expired and the paused action was dropped. Call the tool again if the "
    "user still wants it; a new code will be shown in the firewall console.",
    "locked": "That action was locked after too many wrong codes. Call the tool again if the user still "
    "wants it; a new code will be shown in the firewall console.",
    "withdrawn": "That action was withdrawn (the call was cancelled).",
}


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What :meth:`PendingActions.confirm` decided. ``action`` is set only on success."""

    ok: bool
    message: str
    action: PendingRow | None = None


class PendingActions:
    """The pending-action book of the whole daemon."""

    def __init__(self, store: Store, codes: CodeBook, *, max_failures_per_minute: int = 5) -> None:
        self._store = store
        self._codes = codes
        self._max_failures = max_failures_per_minute
        self._failures: dict[str, deque[float]] = {}

    def create(
        self,
        *,
        session_id: str,
        server: str | None,
        tool: str,
        params: bytes,
        rule: str,
        reason: str,
        code_length: int,
        ttl: float,
        attempts: int,
    ) -> PendingRow:
        """Store a new pending action with a fresh code, audited as ``paused``."""
        now = time.time()
        action_id = "A-" + secrets.token_hex(4).upper()
        # Two waiting actions of one session never share a code (a code names its action).
        taken = [r for r in self._store.pending_of_session(session_id, now) if r.status == "pending"]
        code = self._codes.new_code(code_length)
        while any(self._codes.matches(r.action_id, code, r.code_mac) for r in taken):
            code = self._codes.new_code(code_length)
        row = PendingRow(
            action_id=action_id,
            session_id=session_id,
            server=server,
            tool=tool,
            params=params,
            code_mac=self._codes.mac(action_id, code),
            code_sealed=self._codes.seal(action_id, code),
            rule=rule,
            reason=reason,
            created=now,
            deadline=now + ttl,
            attempts_left=attempts,
            status="pending",
            closed_at=None,
        )
        self._store.insert_pending(row)
        self._store.audit(
            "paused",
            session_id=session_id,
            server=server,
            tool=tool,
            action_id=action_id,
            decision="approve",
            rule=rule,
            detail=params.decode("utf-8", "replace")[:4000],
        )
        return row

    def code_of(self, row: PendingRow) -> str:
        """The code of an action, for a console."""
        return self._codes.unseal(row.action_id, row.code_sealed)

    def open_count(self, session_id: str) -> int:
        """How many actions of the session are waiting."""
        return sum(
            1 for r in self._store.pending_of_session(session_id, time.time()) if r.status == "pending"
        )

    def confirm(self, session_id: str, code: str) -> ConfirmResult:
        """Check ``code`` against the session's actions; approve the one it belongs to."""
        now = time.time()
        window = self._failures.setdefault(session_id, deque())
        while window and window[0] < now - 60:
            window.popleft()
        if len(window) >= self._max_failures:
            return ConfirmResult(
                False,
                "Too many wrong codes in the last minute; the firewall is not checking codes for this "
                "session right now. Wait a minute, and ask the user for the code shown in the firewall "
                "console; do not guess.",
            )
        self.expire(now)
        rows = self._store.pending_of_session(session_id, now - _REMEMBER)
        # Check every row, whatever matches first, so the time taken does not say which one did.
        matched = [r for r in rows if self._codes.matches(r.action_id, code, r.code_mac)]
        hit = matched[0] if matched else None
        if (
            hit is not None
            and hit.status == "pending"
            and self._store.close_pending(hit.action_id, "approved")
        ):
            self._store.audit(
                "confirm_ok",
                session_id=session_id,
                server=hit.server,
                tool=hit.tool,
                action_id=hit.action_id,
                decision="allow",
                rule=hit.rule,
            )
            return ConfirmResult(True, "approved", hit)
        window.append(now)
        message = _STALE_MESSAGES.get(hit.status, "") if hit is not None else ""
        locked = self._count_failure(session_id, rows)
        self._store.audit(
            "confirm_failed",
            session_id=session_id,
            action_id=hit.action_id if hit else None,
            detail=f"stale code ({hit.status})" if hit else "wrong code",
        )
        if not message:
            message = "That code does not match any action waiting for approval in this session."
            if locked:
                message += f" Too many wrong codes: {', '.join(locked)} locked and will not run."
            message += (
                " Ask the user to read the code again from the firewall console; never guess it."
                " (Each server behind the firewall has its own firewall_confirm:"
                " use the one of the server that paused the call.)"
            )
        return ConfirmResult(False, message)

    def _count_failure(self, session_id: str, rows: list[PendingRow]) -> list[str]:
        locked = []
        for row in rows:
            if row.status != "pending":
                continue
            left = row.attempts_left - 1
            if left > 0:
                self._store.set_attempts(row.action_id, left)
            elif self._store.close_pending(row.action_id, "locked"):
                self._store.set_attempts(row.action_id, 0)
                self._store.audit(
                    "locked", session_id=session_id, server=row.server, tool=row.tool, action_id=row.action_id
                )
                locked.append(row.action_id)
        return locked

    def deny(self, action_id: str, who: str = "console") -> PendingRow | None:
        """Deny an open action; returns it, or None if it was not open."""
        row = self._store.get_pending(action_id)
        if row is None or not self._store.close_pending(action_id, "denied"):
            return None
        self._store.audit(
            "denied",
            session_id=row.session_id,
            server=row.server,
            tool=row.tool,
            action_id=action_id,
            detail=who,
        )
        return row

    def withdraw(self, session_id: str, action_id: str, why: str = "cancelled by the agent") -> bool:
        """Close a paused call that cannot or need not run; only its own session may withdraw it."""
        row = self._store.get_pending(action_id)
        if row is None or row.session_id != session_id:
            return False
        if not self._store.close_pending(action_id, "withdrawn"):
            return False
        self._store.audit(
            "withdrawn",
            session_id=session_id,
            server=row.server,
            tool=row.tool,
            action_id=action_id,
            detail=why,
        )
        return True

    def abandon_session(self, session_id: str) -> list[str]:
        """Withdraw every open action of a session whose shim is gone for good."""
        rows = [r for r in self._store.pending_of_session(session_id, time.time()) if r.status == "pending"]
        return [r.action_id for r in rows if self.withdraw(session_id, r.action_id, "the shim exited")]

    def expire(self, now: float | None = None) -> list[PendingRow]:
        """Close every action past its deadline; returns them."""
        now = time.time() if now is None else now
        done = []
        for row in self._store.due_for_expiry(now):
            if self._store.close_pending(row.action_id, "expired"):
                self._store.audit(
                    "expired",
                    session_id=row.session_id,
                    server=row.server,
                    tool=row.tool,
                    action_id=row.action_id,
                )
                done.append(row)
        self._store.prune_pending(now - _REMEMBER)
        return done

    def forget_session(self, session_id: str) -> None:
        """Drop in-memory counters of a session that ended."""
        self._failures.pop(session_id, None)
