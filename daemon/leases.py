"""Leases: verdicts a shim may reuse, so an allowed call skips the round trip to the daemon.

When the daemon allows a call, it may push the shim a :class:`~daemon.protocol.LeaseGrant` for
that tool: later calls to it are forwarded by the shim at once, with an audit record sent (not
awaited) before each. A lease is offered only when the daemon's whole decision provably cannot
depend on a call's arguments, given that they pass the check the lease names
(:data:`CHECK`, implemented by :func:`shim.leases.plain_arguments`):

- the verdict is ``allow``, and it is the policy's own (no grant or other step changed it);
- every rule that could decide calls to the tool and tests arguments needs a key the call lacks:
  the lease names those keys (:meth:`Policy.argument_keys`), and a call holding any of them is
  asked about (the default policy's SQL rule needs a ``sql`` key, for instance);
- the built-in self-protection only looks at strings that look like paths (a ``/``, a leading
  ``~``, ``.`` or ``$HOME``, a ``file:`` URI), and the check refuses every string with any of
  those features; so the session's server must not work inside a protected place (there, every
  word counts as a path) nor under ``/proc``;
- no veto in :attr:`Leases.vetoes` objects (a quarantined tool, for instance).

Revocation: every lease carries the daemon's epoch. :meth:`Leases.revoke` (behind
:meth:`daemon.server.Firewalld.verdicts_changed`, on every policy reload, grant change and pin
change) raises the epoch and pushes :class:`~daemon.protocol.LeasesRevoked` to every shim in the
same thread step, before any later decision is sent; a shim drops older leases when it reads it,
before it reads another call from that point on, and acknowledges. The revocation is complete when
every shim connected at the time has acknowledged or has been disconnected (after
``lease_ack_timeout``); then an audit row ``leases_revoked`` says so. A lease is tied to its
connection: a shim drops every lease when the connection ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon import protocol as p
from daemon.decisions import Judged
from daemon.peer import Peer
from daemon.selfprotect import SelfProtection
from daemon.sessions import Session
from daemon.store import Store

log = logging.getLogger("firewalld")

#: The argument check a lease names; see :func:`shim.leases.plain_arguments`.
CHECK = "no-paths/1"
#: Tool names longer than this get no lease (the shim keeps a table of them).
_MAX_TOOL = 512
#: Audit records taken in one message, at most.
MAX_AUDIT_BATCH = 10_000
#: How far back (audit rows) a resumed session's recorded calls are looked for, after a restart.
_RESUME_WINDOW = 200_000

#: A veto: why a tool of a session must not be leased (``None``: no objection).
Veto = Callable[[Session, str], str | None]


@dataclass(slots=True)
class _Revocation:
    epoch: int
    reason: str
    waiting: set[Peer]
    deadline: float
    shims: int
    dropped: int = 0


@dataclass(slots=True)
class _SessionLeases:
    """What one session's shim holds, as far as the daemon knows."""

    given: dict[str, int] = field(default_factory=dict)  # tool -> epoch of the lease sent
    recorded: int | None = None  # the highest audit seq recorded (None: look it up first)


class Leases:
    """The daemon's side of leases: offers, revocations and the audit of leased calls."""

    def __init__(self, store: Store, guard: SelfProtection, *, enabled: bool, ack_timeout: float) -> None:
        self.store = store
        self.guard = guard
        self.enabled = enabled
        self.ack_timeout = ack_timeout
        self.epoch = 0
        #: Checked before every offer; a pin or quarantine step adds its own here.
        self.vetoes: list[Veto] = []
        #: Ends a shim's connections (its main one and its audit channel): see :meth:`enforce`.
        self.disconnect: Callable[[Peer], None] = lambda peer: peer.abort()
        self._sessions: dict[str, _SessionLeases] = {}
        self._cwd_ok: dict[str, bool] = {}
        self._open: list[_Revocation] = []

    # -- offers ------------------------------------------------------------------------------

    def offer(self, session: Session, judged: Judged, verdict: p.Verdict) -> p.LeaseGrant | None:
        """The lease to push with an ``allow`` verdict, or None (no lease, or one already sent)."""
        if not self.enabled or verdict.action != p.ALLOW or judged.verdict is None or judged.tool is None:
            return None
        tool = judged.tool
        policy, policy_verdict = judged.verdict
        if policy_verdict.action != p.ALLOW or policy_verdict.rule != verdict.rule or len(tool) > _MAX_TOOL:
            return None
        state = self._sessions.setdefault(session.session_id, _SessionLeases())
        if state.given.get(tool) == self.epoch:
            return None
        keys = policy.argument_keys(tool)
        if keys is None or not self._cwd_safe(session):
            return None
        for veto in self.vetoes:
            if veto(session, tool) is not None:
                return None
        if len(state.given) >= 4096:
            state.given.clear()
        state.given[tool] = self.epoch
        return p.LeaseGrant(tool, self.epoch, verdict.rule, CHECK, sorted(keys))

    def _cwd_safe(self, session: Session) -> bool:
        """Whether the session's server works outside every protected place (and ``/proc``):
        inside one, self-protection takes every word of a call for a path."""
        safe = self._cwd_ok.get(session.session_id)
        if safe is None:
            cwd = session.cwd
            safe = bool(cwd) and not cwd.startswith("/proc") and not self.guard.covers(cwd)
            if len(self._cwd_ok) > 10_000:
                self._cwd_ok.clear()
            self._cwd_ok[session.session_id] = safe
        return safe

    # -- revocation --------------------------------------------------------------------------

    def revoke(self, reason: str, shims: list[Peer]) -> int:
        """Void every lease: raise the epoch and tell every shim now. Returns the new epoch.

        Synchronous: decisions made after it returns carry the new epoch, and the revocation is
        queued on each connection before anything they send.
        """
        self.epoch += 1
        for state in self._sessions.values():
            state.given.clear()
        message = p.LeasesRevoked(self.epoch)
        reached: set[Peer] = set()
        for peer in shims:
            try:
                peer.push(message)
                reached.add(peer)
            except Exception as exc:  # noqa: BLE001 - that connection is ending: its leases with it
                log.debug("could not tell a shim of the revocation: %r", exc)
        revocation = _Revocation(self.epoch, reason, reached, time.monotonic() + self.ack_timeout, len(shims))
        log.info("leases revoked (epoch %d): %s", self.epoch, reason)
        self._open.append(revocation)
        self._settle()
        return self.epoch

    def revoke_session(self, session_id: str, peer: Peer | None) -> None:
        """Void one session's leases (its server listed its tools again: annotations may differ)."""
        state = self._sessions.get(session_id)
        if state is None or not state.given:
            return
        self.epoch += 1
        state.given.clear()
        if peer is not None:
            try:
                peer.push(p.LeasesRevoked(self.epoch))
            except Exception as exc:  # noqa: BLE001 - that connection is ending
                log.debug("could not tell a shim of the revocation: %r", exc)

    def acknowledged(self, peer: Peer, epoch: int) -> None:
        """A shim dropped its leases below ``epoch``."""
        for revocation in self._open:
            if revocation.epoch <= epoch:
                revocation.waiting.discard(peer)
        self._settle()

    def gone(self, peer: Peer, session_id: str | None) -> None:
        """A connection ended: its shim dropped every lease with it."""
        if session_id is not None:
            state = self._sessions.get(session_id)
            if state is not None:
                state.given.clear()
        for revocation in self._open:
            revocation.waiting.discard(peer)
        self._settle()

    def enforce(self) -> None:
        """Disconnect the shims that have not acknowledged a revocation in time (housekeeping)."""
        now = time.monotonic()
        for revocation in self._open:
            if revocation.deadline <= now:
                for peer in list(revocation.waiting):
                    log.warning("a shim did not acknowledge revoked leases in time; disconnecting it")
                    self.disconnect(peer)
                    revocation.dropped += 1
                revocation.waiting.clear()
        self._settle()

    def _settle(self) -> None:
        while self._open and not self._open[0].waiting:
            done = self._open.pop(0)
            acked = done.shims - done.dropped
            detail = f"epoch {done.epoch}: {done.reason}; {acked} shim(s) acknowledged"
            if done.dropped:
                detail += f", {done.dropped} disconnected for not acknowledging"
            self.store.audit("leases_revoked", decision="revoked", rule="leases", detail=detail)

    @property
    def revoking(self) -> bool:
        """A revocation is waiting for acknowledgements."""
        return bool(self._open)

    # -- the audit of leased calls -----------------------------------------------------------

    def resumed(self, session_id: str) -> None:
        """A shim took its session back: after a restart, which calls are recorded is looked up."""
        if session_id not in self._sessions:
            self._sessions[session_id] = _SessionLeases()
        self._sessions[session_id].given.clear()

    def rewind(self, session_id: str) -> None:
        """The transaction that held this session's last records failed: what is recorded is
        looked up in the log again, so the shim's resent records are not taken as written."""
        state = self._sessions.get(session_id)
        if state is not None:
            state.recorded = None

    def record(self, session: Session, calls: list[object]) -> int:
        """Put each call not yet recorded into the audit log. Returns how many were new.

        Raises:
            p.ProtocolError: a record is not ``[seq, tool, rule, params_head]``.
        """
        state = self._sessions.setdefault(session.session_id, _SessionLeases(recorded=0))
        if state.recorded is None:
            state.recorded = self._recorded_before(session.session_id)
        if len(calls) > MAX_AUDIT_BATCH:
            raise p.ProtocolError(f"lease_audit: more than {MAX_AUDIT_BATCH} calls")
        new = 0
        for call in calls:
            if not (
                isinstance(call, list | tuple)
                and len(call) == 4
                and type(call[0]) is int
                and isinstance(call[1], str)
                and isinstance(call[2], str)
                and isinstance(call[3], bytes)
            ):
                raise p.ProtocolError("lease_audit: a call is not [seq, tool, rule, params_head]")
            seq, tool, rule, head = call
            if seq <= state.recorded:
                continue  # sent again after a reconnect, and recorded already
            state.recorded = seq
            new += 1
            session.allowed += 1
            self.store.audit(
                "decision",
                session_id=session.session_id,
                server=session.server,
                tool=tool[:_MAX_TOOL],
                action_id=f"lease:{seq}",
                decision=p.ALLOW,
                rule=f"{rule[:200]} (lease)",
                detail=head[:1000].decode("utf-8", "replace"),
            )
        return new

    def _recorded_before(self, session_id: str) -> int:
        """The highest seq of this session's leased calls already in the log (a daemon that died
        may have recorded calls it never acknowledged)."""
        return self.store.last_lease_seq(session_id, _RESUME_WINDOW)

    def forget(self, session_id: str) -> None:
        """A session is closed for good."""
        self._sessions.pop(session_id, None)
        self._cwd_ok.pop(session_id, None)
