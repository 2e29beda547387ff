"""What firewalld's handlers share: the daemon's state, and how a change in it reaches the peers.

:class:`DaemonState` holds the components (sessions, policies, grants, pins, leases...) and the
connected peers; a change that may alter verdicts revokes every lease, and the consoles are told
of changes through the broadcaster. The handlers of :mod:`daemon.housekeeping`,
:mod:`daemon.audit_channel`, :mod:`daemon.shim_requests`, :mod:`daemon.console_requests` and
:mod:`daemon.connections` build on it, and :class:`daemon.server.Firewalld` puts them together.
"""

from __future__ import annotations

import logging
import os
import time

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from daemon import protocol as p
from daemon.arguments import ArgumentsView
from daemon.decisions import Decisions, Judged
from daemon.elicitation import ElicitationApprovals
from daemon.grant_desk import GrantDesk
from daemon.grants import Grants
from daemon.leases import Leases
from daemon.peer import Budget, Peer
from daemon.pending import PendingActions
from daemon.pins import Pins
from daemon.policies import PolicyCache
from daemon.selfprotect import SelfProtection, default_places
from daemon.sessions import Sessions
from daemon.settings import DaemonSettings
from daemon.store import Store

log = logging.getLogger("firewalld")

#: Leased calls' records are acknowledged once a shim has this many unacknowledged, or
#: :data:`daemon.audit_channel.ACK_AFTER` seconds after the first of them. An Ack only lets the
#: shim forget records (it keeps them to send again after a reconnect, up to
#: shim.leases.MAX_UNACKED), so nothing waits for it; but each one wakes the shim, and an Ack every
#: 20 ms stalled about one call in a hundred by a millisecond or more on a 2-vCPU host.
ACK_RECORDS = 1024


class DaemonState:
    """The daemon's state, what tells shims and consoles that it changed, and the approval of a
    held action (asked by a console, or by a grant)."""

    def __init__(self, settings: DaemonSettings, store: Store, pending: PendingActions) -> None:
        self.settings = settings
        self.store = store
        self.pending = pending
        self.sessions = Sessions(store)
        self.policies = PolicyCache()
        self.guard = SelfProtection(
            default_places(settings.state_dir, settings.socket_path, p.default_config_dir(), p.home_dir()),
            p.home_dir(),
        )
        self.grants = Grants(store)
        self.pins = Pins(store, self._pins_changed)
        self.decisions = Decisions(
            settings, store, pending, self.policies, self.guard, grants=self.grants, pins=self.pins
        )
        self._desk = GrantDesk(store, self.grants, self.policies, self._approve, self._grants_changed)
        # Shims to tell that their server's pins changed: (server, the session that caused it).
        # Made by the pusher task, so a Firewalld that never serves leaves no stream unclosed.
        self._pin_pushes_in: MemoryObjectSendStream[tuple[str, str]] | None = None
        self._pin_reporter = ""  # the session whose listing is being compared
        self.elicitations = ElicitationApprovals(store, pending, self.policies, self.pins.refusal)
        self.leases = Leases(
            store, self.guard, enabled=settings.leases, ack_timeout=settings.lease_ack_timeout
        )
        self.policies.on_change = lambda path: self.verdicts_changed(f"policy {path} reloaded")
        self.leases.vetoes.append(self.pins.refusal)  # no lease for a quarantined tool
        self.leases.disconnect = self._disconnect_shim
        # Leased calls' audit records are acknowledged a little later, together (an answer per
        # batch would wake the shim once more per call): session -> the highest rid to ack.
        self._audit_acks: dict[str, int] = {}
        self._ack_waiting: dict[str, int] = {}  # session -> records not acknowledged yet
        # Acks of records in the batch being answered, sent once its transaction has committed.
        self._uncommitted_acks: list[tuple[str, int, int]] = []
        self._audit_channels: dict[Peer, str] = {}  # -> its session
        self._ack_due = anyio.Event()  # records wait for an Ack
        self._ack_now = anyio.Event()  # a shim has ACK_RECORDS of them: send the Acks now
        self._consoles: set[Peer] = set()
        self._connections = 0
        self._shims: set[Peer] = set()  # a stop waits until they have read their answers
        self._shim_of: dict[str, Peer] = {}  # session -> its shim's connection
        self._held: dict[str, float] = {}  # action -> until when its shim holds the call open
        # Shim batches are answered in a reader callback (Peer.serve), which cannot wait for a
        # console: the events they cause go through this queue to the broadcaster task.
        self._events_in, self._events_out = anyio.create_memory_object_stream[p.Event](1000)
        self._reload = anyio.Event()
        self._ingest = anyio.Event()  # the audit spool has grown: move it into the table now
        self._audit_dirty = False  # allowed calls were audited since the last "audit" event
        self._judged: dict[int, Judged] = {}  # huge calls judged off the loop, by id() of their Decide
        self._uid = os.getuid()
        #: How each open action's arguments are listed (made once: parsing 40 MB takes a while).
        self._argument_views: dict[str, ArgumentsView] = {}
        #: The full arguments last fetched by a console, fetched piece by piece.
        self._full: tuple[str, bytes] | None = None
        self._budget = Budget(settings.max_buffered_bytes)
        self._unauthenticated: dict[Peer, anyio.CancelScope] = {}  # oldest first
        self._failing: set[str] = set()  # housekeeping steps whose last try failed
        self.started = time.time()

    def _to_ack(self, session_id: str, rid: int, records: int) -> None:
        """Records up to ``rid`` are in the audit log: acknowledge them (see ``_acker``)."""
        self._audit_acks[session_id] = rid
        waiting = self._ack_waiting.get(session_id, 0) + records
        self._ack_waiting[session_id] = waiting
        self._ack_due.set()
        if waiting >= ACK_RECORDS:
            self._ack_now.set()

    def _grants_changed(self, reason: str) -> None:
        """Grants were made, revoked or ended (or an "always" rule was written): consoles refresh,
        and a verdict given before may not hold any more."""
        self.verdicts_changed(reason)
        self._post(p.Event("grants", reason))

    def reload(self) -> None:
        """Re-read every policy file now (SIGHUP)."""
        self._reload.set()

    def verdicts_changed(self, reason: str) -> None:
        """Something that decides verdicts changed (a policy reload, a grant, a tool pin): revoke
        every lease, in every shim, before any decision made from now on reaches one.

        Synchronous and cheap: call it right after the change is in force. The revocation is
        complete when every shim connected now has acknowledged it (or has been disconnected for
        not doing so within ``lease_ack_timeout``); the audit row ``leases_revoked`` marks that.
        """
        self.leases.revoke(reason, list(self._shim_of.values()))

    def _disconnect_shim(self, peer: Peer) -> None:
        """End a shim's connection and its audit channels at once: a shim that has not read the
        end of its connection yet finds its next audit record refused, so it uses no lease."""
        peer.abort()
        session_id = next((s for s, shim in self._shim_of.items() if shim is peer), None)
        for channel, owner in list(self._audit_channels.items()):
            if owner == session_id:
                channel.abort()

    async def _broadcaster(self) -> None:
        async for event in self._events_out:
            await self.broadcast(event)

    def _pins_changed(self, server: str, reason: str) -> None:
        """A pin's state changed: consoles refresh, and the other chats with that server re-list."""
        self.verdicts_changed(f"{server}: {reason}")
        self._post(p.Event("pins", server))
        if self._pin_pushes_in is None:  # not serving: no shim to tell
            return
        try:
            self._pin_pushes_in.send_nowait((server, self._pin_reporter))
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            log.debug("pin change not pushed (full, or stopping): %s", server)

    async def _pin_pusher(self) -> None:
        pushes_in, pushes_out = anyio.create_memory_object_stream[tuple[str, str]](1000)
        self._pin_pushes_in = pushes_in
        async with pushes_in, pushes_out:
            async for server, reporter in pushes_out:
                for session_id, peer in list(self._shim_of.items()):
                    session = self.sessions.get(session_id)
                    if session is None or session_id == reporter or self.pins.identity(session) != server:
                        continue
                    try:
                        with anyio.fail_after(2.0):
                            await peer.send(p.PinsChanged())
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError):
                        log.debug("could not tell %s that its tools changed", session_id)

    def _post(self, event: p.Event) -> None:
        """Have the broadcaster tell the consoles. An event only tells a console to refresh, so
        one that finds a thousand queued before it is dropped rather than waited for."""
        try:
            self._events_in.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            log.debug("console event not queued (full, or stopping): %s", event)

    async def broadcast(self, event: p.Event) -> None:
        """Tell every subscribed console that something changed."""
        for peer in list(self._consoles):
            try:
                with anyio.fail_after(2.0):
                    await peer.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError):
                self._consoles.discard(peer)

    async def _approve(self, msg: p.ApproveAction) -> p.Message:
        """A console approves a held action: it is closed as approved and its shim runs it at once,
        answering the agent's original call with the real result."""
        row = self.store.get_pending(msg.action_id)
        if row is None or row.status != "pending":
            return p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}")
        session = self.sessions.get(row.session_id)
        quarantined = self.pins.refusal(session, row.tool) if session is not None else None
        if quarantined is not None:  # as a typed code would be: the changed definition is reviewed first
            return p.Error(msg.rid, p.E_FORBIDDEN, f"{row.action_id} cannot run now. {quarantined}")
        shim = self._shim_of.get(row.session_id)
        if shim is None or self._held.get(row.action_id, 0.0) <= time.time():
            return p.Error(
                msg.rid,
                p.E_FORBIDDEN,
                f"{row.action_id} is not held open by its chat any more (the agent was told it is "
                "paused): approve it by typing its code into the chat, or deny it here",
            )
        if self.pending.approve(row.action_id) is None:
            return p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}")
        del self._held[row.action_id]
        try:
            await shim.send(p.Approved(row.action_id))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            # The shim is gone: its session's approved actions are settled when it is abandoned.
            log.warning("the shim of %s went away before it heard of the approval", row.action_id)
        await self.broadcast(p.Event("pending", row.action_id))
        return p.Ack(msg.rid, f"approved {row.action_id} ({row.tool}); it runs now in its chat")
