"""The audit channel: a shim's second connection, which carries only the audit records of the calls
it forwarded under leases (see :mod:`daemon.leases`), acknowledged a little later, together."""

from __future__ import annotations

import logging

import anyio

from daemon import protocol as p
from daemon.housekeeping import INGEST_AFTER
from daemon.sessions import Session
from daemon.state import DaemonState

log = logging.getLogger("firewalld")

#: Seconds an audit channel's records may wait in its socket before the daemon reads them.
AUDIT_EVERY = 0.01
#: Seconds after the first unacknowledged record of a shim that its Ack goes out at the latest
#: (see :data:`daemon.state.ACK_RECORDS`).
ACK_AFTER = 1.0


class AuditChannels(DaemonState):
    """Records what the audit channels bring, and acknowledges it on each shim's connection."""

    def _leased(self, session: Session, batch: list[p.Message]) -> None:
        """Record a batch from a shim's audit channel, and acknowledge it soon, on its connection."""
        if not batch:
            return
        recorded: list[p.LeaseAudit] = []
        try:
            with self.store.transaction():
                for msg in batch:
                    if not isinstance(msg, p.LeaseAudit):
                        raise p.ProtocolError(f"an audit channel may not send {p.tag_of(msg)}")
                    if self.leases.record(session, msg.calls):
                        self._audit_dirty = True
                    recorded.append(msg)
        except BaseException:
            self.leases.rewind(session.session_id)  # nothing of it was committed
            raise
        for msg in recorded:  # committed: only now may the shim forget them
            self._to_ack(session.session_id, msg.rid, len(msg.calls))
        if self.store.spooled >= INGEST_AFTER:
            self._ingest.set()

    async def _acker(self) -> None:
        """Acknowledge leased calls' audit records, one Ack per shim, when a shim has
        :data:`~daemon.state.ACK_RECORDS` of them waiting or :data:`ACK_AFTER` seconds after the first."""
        while True:
            await self._ack_due.wait()
            with anyio.move_on_after(ACK_AFTER):
                await self._ack_now.wait()
            self._ack_due, self._ack_now = anyio.Event(), anyio.Event()
            due, self._audit_acks = self._audit_acks, {}
            self._ack_waiting.clear()
            for session_id, rid in due.items():
                peer = self._shim_of.get(session_id)
                if peer is None:
                    continue  # gone: the shim sends them again on its next connection
                try:
                    peer.push(p.Ack(rid))
                except (anyio.BrokenResourceError, OSError):
                    pass

    async def drain(self, limit: float) -> None:
        """Record what waits in the audit channels, then wait (at most ``limit`` seconds) for the
        shims to have read every answer sent to them."""
        for peer in list(self._audit_channels):
            if peer.read_now is not None:
                peer.read_now()
        with anyio.move_on_after(limit):
            while any(peer.backlogged for peer in self._shims):  # noqa: ASYNC110 - once, at a stop
                await anyio.sleep(0.01)
