"""Pending actions: a paused call, its frozen params, its code, its deadline and its attempts.

A code approves one action of one session, once, before its deadline. A wrong code (or a stale
one: expired, denied, already used) is counted against the open actions *of the same session
only*; when an action runs out of attempts it is locked. Guessing is bounded twice: per session
(wrong codes per minute) and per user, across every chat (code checks per hour), so opening many
chats does not multiply the guesses. Every change is audited before the answer that depends on
it leaves the daemon.

Codes live in memory only (:mod:`daemon.codes`): after a restart every open action gets a new
code (:meth:`PendingActions.reissue`). An approved action whose call never reached the server (the
daemon stopped before the shim got the approval, or the approval came after the shim had given
up) waits for approval again (:meth:`PendingActions.reopen`), so the call runs at most once and
the audit says what happened.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from dataclasses import dataclass

from daemon import failpoints
from daemon.codes import CodeBook
from daemon.store import PendingRow, Store

#: How long a closed action is remembered, to tell "expired" or "already used" from "wrong".
_REMEMBER = 3600.0
#: Outcomes the shim reports for an approved call.
OUTCOMES = frozenset({"sent", "input_required", "ran", "not_run", "unknown"})

_STALE_MESSAGES = {
    "approved": "That code was already used: the action it approved has run. Codes work once.",
    "denied": "The user denied this action in the firewall console. It will not run; do not retry.",
    "expired": "That code has expired and the paused action was dropped. Call the tool again if the "
    "user still wants it; a new code will be shown in the firewall console.",
    "locked": "That action was locked after too many wrong codes. Call the tool again if the user still "
    "wants it; a new code will be shown in the firewall console.",
    "withdrawn": "That action was withdrawn (the call was cancelled).",
}
_CHECKED = re.compile(r"tried against (\d+) waiting action")


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What :meth:`PendingActions.confirm` decided. ``action`` is set only on success."""

    ok: bool
    message: str
    action: PendingRow | None = None


class PendingActions:
    """The pending-action book of the whole daemon."""

    def __init__(
        self,
        store: Store,
        codes: CodeBook,
        *,
        max_failures_per_minute: int = 5,
        max_checks_per_hour: int = 100,
    ) -> None:
        self._store = store
        self._codes = codes
        self._max_failures = max_failures_per_minute
        self._max_checks = max_checks_per_hour
        self._failures: dict[str, deque[float]] = {}
        #: Wrong-code checks of the last hour, every session together: (time, actions checked).
        self._checks: deque[tuple[float, int]] = deque()
        self._checks_total = 0
        #: When this process started serving: a wrong code soon after may be one from before.
        self._started = time.time()

    # -- start-up ----------------------------------------------------------------------------

    def reissue(self) -> list[PendingRow]:
        """At start-up: give every open action a new code, and remember the last hour's guesses.

        The codes of a previous daemon died with it (they were never on disk). Databases of older
        versions kept a MAC and a sealed copy of each code: those are blanked. Returns the actions
        that got a new code.
        """
        self._store.wipe_code_material()
        now = time.time()
        self.expire(now)  # a deadline that passed while the daemon was down is still a deadline
        for failed in self._store.query_audit(
            10_000, None, None, None, event="confirm_failed", since=now - 3600
        ):
            match = _CHECKED.search(failed["detail"] or "")
            self._note_checks(float(failed["ts"]), int(match[1]) if match else 1)
        rows = [r for r in self._store.open_pending() if self._codes.code_of(r.action_id) is None]
        by_session: dict[str, list[str]] = {}
        for row in rows:
            taken = by_session.setdefault(row.session_id, [])
            self._codes.mint(row.action_id, row.code_length, taken)
            taken.append(row.action_id)
            self._store.audit(
                "code_reissued",
                session_id=row.session_id,
                server=row.server,
                tool=row.tool,
                action_id=row.action_id,
                detail="the daemon restarted: the action has a new code, the old one is void",
            )
        return rows

    # -- creating and checking -------------------------------------------------------------

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
        taken = [
            r.action_id for r in self._store.pending_of_session(session_id, now) if r.status == "pending"
        ]
        self._codes.mint(action_id, code_length, taken)
        row = PendingRow(
            action_id=action_id,
            session_id=session_id,
            server=server,
            tool=tool,
            params=params,
            rule=rule,
            reason=reason,
            created=now,
            deadline=now + ttl,
            attempts_left=attempts,
            status="pending",
            closed_at=None,
            code_length=code_length,
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
        """The code of an open action, for a console."""
        return self._codes.code_of(row.action_id) or ""

    def open_count(self, session_id: str) -> int:
        """How many actions of the session are waiting."""
        return sum(
            1 for r in self._store.pending_of_session(session_id, time.time()) if r.status == "pending"
        )

    def _note_checks(self, when: float, count: int) -> None:
        self._checks.append((when, count))
        self._checks_total += count

    def _checks_last_hour(self, now: float) -> int:
        while self._checks and self._checks[0][0] < now - 3600:
            self._checks_total -= self._checks.popleft()[1]
        return self._checks_total

    def confirm(self, session_id: str, code: str) -> ConfirmResult:
        """Check ``code`` against the session's actions; approve the one it belongs to."""
        now = time.time()
        window = self._failures.setdefault(session_id, deque())
        while window and window[0] < now - 60:
            window.popleft()
        if len(window) >= self._max_failures:
            return self._throttled(
                session_id,
                "per chat: too many wrong codes in the last minute",
                "Too many wrong codes in the last minute; the firewall is not checking codes for this "
                "session right now. Nothing was run. Wait a minute, and ask the user for the code shown "
                "in the firewall console; do not guess.",
            )
        if self._checks_last_hour(now) >= self._max_checks:
            return self._throttled(
                session_id,
                f"per user: {self._max_checks} wrong-code checks in the last hour, every chat together",
                "Too many wrong codes in the last hour, across every chat; the firewall is not checking "
                "codes right now, so that guessing cannot work. Nothing was run. Ask the user to try "
                "again later, or to deny the action in the firewall console.",
            )
        self.expire(now)
        rows = self._store.pending_of_session(session_id, now - _REMEMBER)
        # Check every row, whatever matches first, so the time taken does not say which one did.
        matched = [r for r in rows if self._codes.matches(r.action_id, code)]
        hit = matched[0] if matched else None
        if (
            hit is not None
            and hit.status == "pending"
            and self._store.close_pending(hit.action_id, "approved")
        ):
            failpoints.hit("confirm.approved")
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
        waiting = sum(1 for r in rows if r.status == "pending")
        # A guess with nothing waiting cannot approve anything: it costs the hour's budget nothing.
        self._note_checks(now, waiting)
        message = _STALE_MESSAGES.get(hit.status, "") if hit is not None else ""
        locked = self._count_failure(session_id, rows)
        self._store.audit(
            "confirm_failed",
            session_id=session_id,
            action_id=hit.action_id if hit else None,
            detail=(f"stale code ({hit.status})" if hit else "wrong code")
            + f", tried against {waiting} waiting action(s)",
        )
        if not message:
            message = "That code does not match any action waiting for approval in this session."
            if locked:
                message += f" Too many wrong codes: {', '.join(locked)} locked and will not run."
            if now - self._started < 900:
                message += (
                    " (The firewall daemon restarted recently: codes shown before the restart no longer "
                    "work; the console shows the new ones.)"
                )
            message += (
                " Ask the user to read the code again from the firewall console; never guess it."
                " (Each server behind the firewall has its own firewall_confirm:"
                " use the one of the server that paused the call.)"
            )
        return ConfirmResult(False, message)

    def _throttled(self, session_id: str, why: str, message: str) -> ConfirmResult:
        """A code not checked at all, because of a guessing limit: audited, so the human sees it."""
        self._store.audit("confirm_throttled", session_id=session_id, detail=f"code not checked ({why})")
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

    # -- what became of an approved call ---------------------------------------------------

    def record_outcome(self, session_id: str, action_id: str, state: str, ok: bool, detail: str) -> bool:
        """Audit what the shim says became of an approved call, once; True if it was new.

        A record re-sent after a reconnect is recognised and not audited twice; ``sent`` never
        overrides what came after it. ``not_run``, before anything was sent, makes the action wait
        for approval again (:meth:`reopen`). Only the action's own session may report on it.
        """
        row = self._store.get_pending(action_id)
        if row is not None:
            if row.session_id != session_id or row.status != "approved":
                return False  # another session's, or a stale record for an action reopened since
            before = self._store.set_outcome(action_id, state)
            if before is not None and (before == state or before not in ("sent", "input_required")):
                return False
        self._store.audit(
            "outcome",
            session_id=session_id,
            server=row.server if row else None,
            tool=row.tool if row else None,
            action_id=action_id,
            decision={"ran": "ok" if ok else "error"}.get(state, state),
            detail=detail[:2000],
        )
        if state == "not_run" and row is not None and row.outcome is None:
            self.reopen(row, detail)
        return True

    def reopen(self, row: PendingRow, why: str) -> bool:
        """An approved action whose call did not run waits for approval again (before its deadline).

        It keeps its code if this process made it, else gets a new one; past its deadline it
        stays closed, and is audited as expired.
        """
        now = time.time()
        if row.deadline <= now:
            self._store.audit(
                "expired",
                session_id=row.session_id,
                server=row.server,
                tool=row.tool,
                action_id=row.action_id,
                detail="the approved call did not run, and its deadline has passed",
            )
            return False
        if not self._store.reopen_pending(row.action_id):
            return False
        if self._codes.code_of(row.action_id) is None:
            taken = [r.action_id for r in self._store.pending_of_session(row.session_id, now)]
            self._codes.mint(row.action_id, row.code_length, [a for a in taken if a != row.action_id])
        self._store.audit(
            "reopened",
            session_id=row.session_id,
            server=row.server,
            tool=row.tool,
            action_id=row.action_id,
            detail=f"the approved call did not run ({why}); it waits for approval again",
        )
        return True

    def resync(self, session_id: str) -> list[str]:
        """The shim has re-sent everything it knows after a reconnect: an approved action of which
        it said nothing never reached it, so it never ran. Returns the actions reopened."""
        why = "the approval did not reach the shim: the firewall daemon stopped or the connection dropped"
        return [
            row.action_id
            for row in self._store.approved_without_outcome(session_id)
            if self.record_outcome(session_id, row.action_id, "not_run", False, why)
        ]

    # -- closing ---------------------------------------------------------------------------

    def approve(self, action_id: str, who: str = "console") -> PendingRow | None:
        """Approve an open action without its code (from a console); returns it, or None if it
        was not open. Audited like a code approval, with who approved it."""
        row = self._store.get_pending(action_id)
        if row is None or row.status != "pending" or not self._store.close_pending(action_id, "approved"):
            return None
        self._store.audit(
            "confirm_ok",
            session_id=row.session_id,
            server=row.server,
            tool=row.tool,
            action_id=action_id,
            detail=f"approved in the {who}",
        )
        return row

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
        rows = self._store.pending_of_session(session_id, time.time() - _REMEMBER)
        for row in rows:
            if row.status == "approved" and row.outcome in (None, "sent"):
                why = "the shim exited after the approval: the call may or may not have run"
                self.record_outcome(session_id, row.action_id, "unknown", False, why)
        return [
            r.action_id
            for r in rows
            if r.status == "pending" and self.withdraw(session_id, r.action_id, "the shim exited")
        ]

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
        for action_id in self._store.prune_pending(now - _REMEMBER):
            self._codes.forget(action_id)
        return done

    def forget_session(self, session_id: str) -> None:
        """Drop in-memory counters of a session that ended."""
        self._failures.pop(session_id, None)
