"""firewalld's socket: who may connect, and what each kind of peer may ask.

Every connection is checked (same uid as the daemon), then says hello as a shim or a console.
A shim may only judge calls, confirm codes, withdraw actions and pass on its client's dialog answers
(where the policy allows it, :mod:`daemon.elicitation`) *of its own session*; it never receives a
code. A console may list pending actions with their codes, deny them and read the audit log. Each
connection is served by its own task and closed in a ``finally``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
from anyio.abc import SocketListener, SocketStream, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from daemon import failpoints, status
from daemon import protocol as p
from daemon.decisions import Decisions, Judged
from daemon.elicitation import ElicitationApprovals
from daemon.grant_desk import GrantDesk
from daemon.grants import Grants
from daemon.leases import Leases
from daemon.peer import Budget, Peer, peer_credentials
from daemon.pending import OUTCOMES, PendingActions
from daemon.pins import PinError, Pins
from daemon.policies import PolicyCache
from daemon.selfprotect import SelfProtection, default_places
from daemon.sessions import Session, Sessions
from daemon.settings import DaemonSettings
from daemon.store import Store

log = logging.getLogger("firewalld")
T = TypeVar("T")

#: What accept() can raise that passes once connections close (out of descriptors or memory,
#: or a peer that left the backlog): wait and accept again, serving the open connections meanwhile.
_ACCEPT_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED})
#: Audit rows spooled before the ingester moves them into the table without waiting for its second.
INGEST_AFTER = 256
#: A call bigger than this (bytes of JSON) is judged on a worker thread, off the event loop.
BIG_CALL = 256 * 1024
#: Seconds an audit channel's records may wait in its socket before the daemon reads them.
AUDIT_EVERY = 0.01
#: Leased calls' records are acknowledged once a shim has this many unacknowledged, or
#: :data:`ACK_AFTER` seconds after the first of them. An Ack only lets the shim forget records
#: (it keeps them to send again after a reconnect, up to shim.leases.MAX_UNACKED), so nothing waits
#: for it; but each one wakes the shim, and an Ack every 20 ms stalled about one call in a hundred
#: by a millisecond or more on a 2-vCPU host.
ACK_RECORDS = 1024
ACK_AFTER = 1.0


class PeerRefused(Exception):
    """Raised when a connection breaks the handshake."""


class Firewalld:
    """The daemon's state and its connection handlers."""

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

    async def serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections and run housekeeping until cancelled (or the listener is closed)."""
        async with self._events_in, self._events_out, anyio.create_task_group() as tg:
            tg.start_soon(self._housekeeping, name="housekeeping")
            tg.start_soon(self._broadcaster, name="broadcaster")
            tg.start_soon(self._ingester, name="ingester")
            tg.start_soon(self._pin_pusher, name="pin pusher")
            tg.start_soon(self._acker, name="lease audit acks")
            task_status.started()
            async with listener:
                backoff = 0.0
                while True:
                    try:
                        stream = await listener.accept()
                    except anyio.ClosedResourceError:
                        return  # closed for a stop: the caller cancels the rest
                    except anyio.BrokenResourceError as exc:
                        cause = exc.__cause__
                        if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_TRANSIENT:
                            raise
                        if not backoff:
                            log.error(
                                "cannot accept connections (%s); retrying while serving the open ones", cause
                            )
                        backoff = min(max(backoff * 2, 0.05), 1.0)
                        await anyio.sleep(backoff)
                        continue
                    if backoff:
                        backoff = 0.0
                        log.info("accepting connections again")
                    tg.start_soon(self._connection, stream, name="connection")

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

    async def _acker(self) -> None:
        """Acknowledge leased calls' audit records, one Ack per shim, when a shim has
        :data:`ACK_RECORDS` of them waiting or :data:`ACK_AFTER` seconds after the first."""
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

    def _to_ack(self, session_id: str, rid: int, records: int) -> None:
        """Records up to ``rid`` are in the audit log: acknowledge them (see :meth:`_acker`)."""
        self._audit_acks[session_id] = rid
        waiting = self._ack_waiting.get(session_id, 0) + records
        self._ack_waiting[session_id] = waiting
        self._ack_due.set()
        if waiting >= ACK_RECORDS:
            self._ack_now.set()

    async def drain(self, limit: float) -> None:
        """Record what waits in the audit channels, then wait (at most ``limit`` seconds) for the
        shims to have read every answer sent to them."""
        for peer in list(self._audit_channels):
            if peer.read_now is not None:
                peer.read_now()
        with anyio.move_on_after(limit):
            while any(peer.backlogged for peer in self._shims):  # noqa: ASYNC110 - once, at a stop
                await anyio.sleep(0.01)

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

    async def _ingester(self) -> None:
        """Move the audit spool into the table every second, or as soon as it holds
        :data:`INGEST_AFTER` rows (so that each bulk insert stays well under a millisecond)."""
        while True:
            with anyio.move_on_after(1.0):
                await self._ingest.wait()
            self._ingest = anyio.Event()
            try:
                self.store.ingest()
            except Exception as exc:  # the rows stay in the spool, and in memory, for the next try
                log.error("could not move the audit spool into the database: %r", exc)
                await anyio.sleep(1.0)  # however often batches ask

    def _post(self, event: p.Event) -> None:
        """Have the broadcaster tell the consoles. An event only tells a console to refresh, so
        one that finds a thousand queued before it is dropped rather than waited for."""
        try:
            self._events_in.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            log.debug("console event not queued (full, or stopping): %s", event)

    async def _housekeeping(self) -> None:
        """Once a second: policies, expiries, abandoned sessions, checkpoint, and hourly pruning.
        Each step is tried on its own; one that fails (a full disk, no file descriptors left) is
        logged once and tried again at the next tick, and never stops the daemon."""
        last_prune = 0.0
        while True:
            with anyio.move_on_after(1.0):
                await self._reload.wait()
            forced, self._reload = self._reload.is_set(), anyio.Event()
            if forced:
                log.info("re-reading the policy files (SIGHUP)")
            for error in self._step("policies", partial(self.policies.recheck_all, force=forced)) or []:
                await self.broadcast(p.Event("policy", error))
            if self.leases.revoking:
                self._step("leases", self.leases.enforce)
            if self._step("expiry", self._expire_and_abandon):
                await self.broadcast(p.Event("pending", "expired"))
            ended = self._step("grants", self.grants.expire)
            if ended:
                self._grants_changed(f"{len(ended)} grant(s) ended")
            if self._audit_dirty:  # at most once a second, so a busy server cannot flood consoles
                self._audit_dirty = False
                await self.broadcast(p.Event("audit", ""))
            self._step("sessions", self._forget_old_sessions)
            self._step("counters", self.sessions.save_counts)
            try:
                await anyio.to_thread.run_sync(self.store.checkpoint)
                self._step("checkpoint", bool)
            except Exception as exc:
                self._step_failed("checkpoint", exc)
            now = time.time()
            if now - last_prune > 3600:
                settings = self.settings
                try:  # counting rows walks millions: off the loop (a read, which never blocks writes)
                    self.store.ingest()
                    cuts = await anyio.to_thread.run_sync(
                        self.store.audit_cuts, settings.audit_max_rows, settings.audit_max_security_rows
                    )
                except Exception as exc:
                    self._step_failed("prune", exc)
                    continue
                older = now - settings.audit_max_age_days * 86400
                if self._step("prune", partial(self.store.delete_audit, older, cuts)) is not None:
                    last_prune = now

    def _expire_and_abandon(self) -> bool:
        changed = bool(self.pending.expire())
        for session_id in self.store.sessions_with_open_actions():
            if not self.sessions.is_live(session_id):
                changed |= bool(self.pending.abandon_session(session_id))
        return changed

    def _forget_old_sessions(self) -> None:
        """A long-lived daemon serves thousands of chats: forget those long closed."""
        open_sessions = set(self.store.sessions_with_open_actions())
        for session_id in self.sessions.prune(time.time() - 3600, open_sessions):
            self.pending.forget_session(session_id)
            self.leases.forget(session_id)

    def _step(self, name: str, run: Callable[[], T]) -> T | None:
        """Run one housekeeping step; ``None`` (logged once until it works again) if it failed."""
        try:
            result = run()
        except Exception as exc:
            self._step_failed(name, exc)
            return None
        if name in self._failing:
            self._failing.discard(name)
            log.info("housekeeping: %s works again", name)
        return result

    def _step_failed(self, name: str, exc: Exception) -> None:
        if name not in self._failing:
            self._failing.add(name)
            if isinstance(exc, sqlite3.Error | OSError):
                log.error("housekeeping: %s failed (%s); trying again every second", name, exc)
            else:  # a bug: worth its traceback, once
                log.exception("housekeeping: %s failed; trying again every second", name)

    async def broadcast(self, event: p.Event) -> None:
        """Tell every subscribed console that something changed."""
        for peer in list(self._consoles):
            try:
                with anyio.fail_after(2.0):
                    await peer.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError):
                self._consoles.discard(peer)

    async def _connection(self, stream: SocketStream) -> None:
        settings = self.settings
        peer = Peer(
            stream, self._budget, max_frame=settings.max_hello_bytes, frame_timeout=settings.frame_timeout
        )
        session: Session | None = None
        console_proc = ""
        counted = False
        role_shim = False
        try:
            pid, uid = peer_credentials(stream.extra(anyio.abc.SocketAttribute.raw_socket))
            if uid != self._uid:
                log.warning("refused a connection from uid %d", uid)
                return
            batch = await self._hello_of(peer)
            if batch is None:
                return
            peer.decoder.max_frame = p.MAX_FRAME
            self._connections += 1
            counted = True
            if self._connections > settings.max_connections:
                await peer.send(p.Error(0, p.E_LIMIT, "firewalld is serving too many connections"))
                return
            hello, rest = batch[0], batch[1:]
            if not isinstance(hello, p.Hello):
                raise PeerRefused("the first message must be hello")
            if hello.proto != p.PROTOCOL_VERSION:
                await peer.send(
                    p.Error(0, p.E_VERSION, f"protocol {hello.proto} is not {p.PROTOCOL_VERSION}")
                )
                return
            if hello.role == p.ROLE_SHIM:
                role_shim = True
                session = shim = await self._welcome_shim(peer, hello)
                self._shims.add(peer)
                self._shim_of[shim.session_id] = peer
                replies = self._shim_batch(shim, rest)  # sent with the hello
                if replies:
                    await peer.send(*replies)
                await peer.serve(
                    lambda batch: self._shim_batch(shim, batch), lambda batch: self._prepare(shim, batch)
                )
            elif hello.role == p.ROLE_AUDIT:
                audited = self.sessions.by_token(hello.resume or "")
                if audited is None:
                    raise PeerRefused("an audit channel for no known session")
                self._leased(audited, rest)
                self._audit_channels[peer] = audited.session_id
                try:
                    await peer.serve_lazily(lambda batch: self._leased(audited, batch), AUDIT_EVERY)
                finally:
                    self._audit_channels.pop(peer, None)
            elif hello.role == p.ROLE_CONSOLE:
                if pid:  # it shows codes: its memory is as off limits to tool calls as ours
                    console_proc = f"/proc/{pid}"
                    self.guard.add(console_proc, "console process (its memory)")
                await peer.send(p.Welcome(session_id="", token=""))
                while True:
                    for request in rest:
                        await self._console_request(peer, request)
                    rest = await peer.receive_batch()
            else:
                raise PeerRefused(f"unknown role {hello.role!r}")
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except (p.ProtocolError, PeerRefused, TimeoutError) as exc:
            log.warning("dropped a connection: %s", exc)
        except OSError as exc:
            log.warning("connection error: %s", exc)
        except Exception:  # a bug must cost one connection (its shim fails closed), not the daemon
            log.exception("internal error; dropped the connection")
        finally:
            peer.release()
            if counted:
                self._connections -= 1
            if console_proc:
                self.guard.remove(console_proc)
            self._consoles.discard(peer)
            self._shims.discard(peer)
            if session is not None and self._shim_of.get(session.session_id) is peer:
                del self._shim_of[session.session_id]
            if role_shim:
                self.leases.gone(peer, session.session_id if session is not None else None)
            if session is not None:
                self.sessions.close(session)
                self.store.audit("session_close", session_id=session.session_id, server=session.server)
                await self.broadcast(p.Event("session", session.session_id))
            await stream.aclose()

    async def _hello_of(self, peer: Peer) -> list[p.Message] | None:
        """The first batch of a new connection, read within the hello deadline; ``None`` if it
        was closed first to make room for a newer one.

        Connections that have not said hello are capped: a new one past the cap closes the
        oldest, since a real shim or console says hello as soon as it connects.
        """
        waiting = self._unauthenticated
        while len(waiting) >= self.settings.max_unauthenticated:
            oldest = next(iter(waiting))
            waiting.pop(oldest).cancel()
            log.debug("too many connections without a hello: closed the oldest")
        with anyio.CancelScope() as scope:
            waiting[peer] = scope
            try:
                with anyio.fail_after(self.settings.hello_timeout):
                    return await peer.receive_batch()
            finally:
                waiting.pop(peer, None)
        return None

    async def _welcome_shim(self, peer: Peer, hello: p.Hello) -> Session:
        session, token = self.sessions.open(hello)
        session.leases = hello.leases
        if hello.resume and token == hello.resume:
            self.leases.resumed(session.session_id)
        _, error = self.policies.get(session.config_path, session.server)
        if error:
            await self.broadcast(p.Event("policy", error))
        self.store.audit(
            "session_open",
            session_id=session.session_id,
            server=session.server,
            detail=json.dumps({"target": session.target, "cwd": session.cwd, "config": session.config_path}),
        )
        await peer.send(p.Welcome(session_id=session.session_id, token=token, policy_error=error))
        await self.broadcast(p.Event("session", session.session_id))
        return session

    # -- shim requests -----------------------------------------------------------------------

    def _leased(self, session: Session, batch: list[p.Message]) -> None:
        """Record a batch from a shim's audit channel, and acknowledge it soon, on its connection."""
        if not batch:
            return
        recorded: list[p.LeaseAudit] = []
        with self.store.transaction():
            for msg in batch:
                if not isinstance(msg, p.LeaseAudit):
                    raise p.ProtocolError(f"an audit channel may not send {p.tag_of(msg)}")
                if self.leases.record(session, msg.calls):
                    self._audit_dirty = True
                recorded.append(msg)
        for msg in recorded:  # committed: only now may the shim forget them
            self._to_ack(session.session_id, msg.rid, len(msg.calls))
        if self.store.spooled >= INGEST_AFTER:
            self._ingest.set()

    def _shim_batch(self, session: Session, batch: list[p.Message]) -> list[p.Message]:
        """Answer a batch: one transaction, committed before the answers are returned to be sent."""
        if not batch:
            return []
        replies: list[p.Message] = []
        events: list[p.Event] = []
        with self.store.transaction():
            for msg in batch:
                self._shim_request(session, msg, replies, events)
        if any(isinstance(r, p.Confirmed) and r.ok for r in replies):
            failpoints.hit("confirm.committed")
        for event in events:
            self._post(event)
        if self.store.spooled >= INGEST_AFTER:
            self._ingest.set()
        return replies

    def _prepare(self, session: Session, batch: list[p.Message]) -> Awaitable[None] | None:
        """For a batch with a huge call in it: judge those calls on a worker thread (parsing,
        self-protection and policy cost seconds for tens of MB of small strings), so the loop goes
        on serving every other session meanwhile. The batch is answered when they are judged."""
        big = [m for m in batch if isinstance(m, p.Decide) and len(m.params) > BIG_CALL]
        if not big:
            return None

        async def judge_all() -> None:
            loop = asyncio.get_running_loop()
            for msg in big:
                self._judged[id(msg)] = await loop.run_in_executor(None, self.decisions.prepare(session, msg))

        return judge_all()

    def _shim_request(
        self, session: Session, msg: p.Message, replies: list[p.Message], events: list[p.Event]
    ) -> None:
        match msg:
            case p.Decide():
                judged = self._judged.pop(id(msg), None) or self.decisions.prepare(session, msg)()
                verdict = self.decisions.decide(session, msg, judged)
                if verdict.action == p.APPROVE:
                    if self._consoles:
                        verdict = verdict._replace(watched=True)  # someone could approve it as it waits
                    if self.elicitations.permitted(session):
                        verdict = verdict._replace(elicit=True)  # the client's dialog may approve it
                elif verdict.action == p.ALLOW and session.leases:
                    grant = self.leases.offer(session, judged, verdict)
                    if grant is not None:
                        replies.append(grant)
                replies.append(verdict)
                self._audit_dirty = True
                if verdict.action != p.ALLOW:
                    events.append(p.Event("pending", verdict.action_id))
            case p.Confirm():
                replies.append(self.decisions.confirm(session, msg))
                events.append(p.Event("pending", "confirm"))
            case p.ContinueCall():
                verdict = self.decisions.continue_call(session, msg)
                replies.append(verdict)
                if verdict.action != p.ALLOW:
                    events.append(p.Event("pending", verdict.action_id))
            case p.Outcome():
                state = msg.state if msg.state in OUTCOMES else "ran"
                if self.pending.record_outcome(session.session_id, msg.action_id, state, msg.ok, msg.detail):
                    events.append(p.Event("pending" if state == "not_run" else "audit", msg.action_id))
                if msg.rid:
                    replies.append(p.Ack(msg.rid))
            case p.Resynced():
                if self.pending.resync(session.session_id):
                    events.append(p.Event("pending", "reopened"))
            case p.Held():
                row = self.store.get_pending(msg.action_id)
                if row is not None and row.session_id == session.session_id and msg.seconds > 0:
                    self._held[msg.action_id] = time.time() + min(msg.seconds, 600.0)
                    if len(self._held) > 10_000:
                        now = time.time()
                        self._held = {a: t for a, t in self._held.items() if t > now}
                else:
                    self._held.pop(msg.action_id, None)
                events.append(p.Event("pending", msg.action_id))
            case p.ElicitationAnswer():
                answer = self.elicitations.answer(session, msg)
                replies.append(answer)
                if isinstance(answer, p.Confirmed | p.Ack):  # taken: the action is closed
                    self._held.pop(msg.action_id, None)
                    events.append(p.Event("pending", msg.action_id))
            case p.Withdraw():
                self._held.pop(msg.action_id, None)
                if self.pending.withdraw(session.session_id, msg.action_id):
                    events.append(p.Event("pending", msg.action_id))
            case p.ToolsListed():
                before = dict(session.tools)
                if msg.first_page:
                    session.tools.clear()
                for tool in msg.tools[:10_000]:
                    name, annotations = tool.get("name"), tool.get("annotations")
                    if isinstance(name, str) and isinstance(annotations, dict):
                        session.tools[name] = annotations
                if session.tools != before:  # trusted annotations may decide differently now
                    self.leases.revoke_session(session.session_id, self._shim_of.get(session.session_id))
            case p.ToolDefinitions():
                replies.append(self._tool_definitions(session, msg))
            case p.LeaseAudit():
                if self.leases.record(session, msg.calls):
                    self._audit_dirty = True
                self._to_ack(session.session_id, msg.rid, len(msg.calls))
            case p.LeasesRevokedAck():
                peer = self._shim_of.get(session.session_id)
                if peer is not None:
                    self.leases.acknowledged(peer, msg.epoch)
            case p.ClientInfo():
                self.sessions.set_client(session, msg)
                events.append(p.Event("session", session.session_id))
            case _:
                replies.append(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a shim may not send {p.tag_of(msg)}")
                )

    def _tool_definitions(self, session: Session, msg: p.ToolDefinitions) -> p.ToolsHidden:
        """Compare a listed page with the pins; the answer names the tools to hide."""
        before = dict(session.tools)
        if msg.first_page:
            session.tools.clear()
        policy, _ = self.policies.get(session.config_path, session.server)
        new_tools = policy.new_tools if policy is not None else "quarantine"
        annotations: dict[str, dict[str, Any]] = {}
        self._pin_reporter = session.session_id
        try:
            hidden = self.pins.observe(session, msg.tools, msg.first_page, new_tools, annotations, msg.more)
        finally:
            self._pin_reporter = ""
        if len(session.tools) < 10_000:
            session.tools.update(annotations)
        if session.tools != before:  # trusted annotations may decide differently now
            self.leases.revoke_session(session.session_id, self._shim_of.get(session.session_id))
        return p.ToolsHidden(msg.rid, hidden)

    # -- console requests --------------------------------------------------------------------

    async def _console_request(self, peer: Peer, msg: p.Message) -> None:
        match msg:
            case p.ListPending():
                expired = self.pending.expire()
                listing = p.PendingList(
                    msg.rid,
                    status.session_views(self),
                    await self.pending_views(),
                    self.store.paused_bytes(),
                    self.settings.max_paused_bytes,
                )
                await peer.send(listing)
                if expired:  # other consoles still show them
                    await self.broadcast(p.Event("pending", "expired"))
            case p.DenyAction():
                row = self.pending.deny(msg.action_id)
                if row is None:
                    await peer.send(p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}"))
                else:
                    await peer.send(p.Ack(msg.rid, f"denied {row.action_id} ({row.tool})"))
                    await self.broadcast(p.Event("pending", row.action_id))
            case p.ApproveAction():
                await peer.send(await self._approve(msg))
            case p.MakeGrant():
                await peer.send(await self._desk.make(msg))
            case p.PreviewRule():
                await peer.send(self._desk.preview(msg))
            case p.ListGrants():
                await peer.send(self._desk.listing(msg))
            case p.RevokeGrant():
                await peer.send(self._desk.revoke(msg))
            case p.QueryLog():
                rows = self.store.query_audit(msg.limit, msg.session_id, msg.server, msg.tool)
                await peer.send(p.LogRows(msg.rid, rows))
            case p.ShowArguments():
                await peer.send(await self._arguments_piece(msg))
            case p.ListPins():
                await peer.send(p.PinList(msg.rid, self.pins.views(msg.server)))
            case p.ReviewTool():
                try:
                    with self.store.transaction():
                        pin = self.pins.review(msg.review_id, msg.accept)
                except PinError as exc:
                    await peer.send(p.Error(msg.rid, p.E_NOT_FOUND, str(exc)))
                else:
                    verb = (
                        "accepted: pinned and shown again"
                        if msg.accept
                        else "rejected: stays hidden and denied"
                    )
                    await peer.send(p.Ack(msg.rid, f"{msg.review_id} ({pin.tool} on {pin.server}) {verb}"))
            case p.Subscribe():
                self._consoles.add(peer)
                await peer.send(p.Ack(msg.rid, "subscribed"))
            case p.StatusQuery():
                await peer.send(status.report(self, msg.rid, self.started))
            case p.StopDaemon():
                log.info("stopping: asked by a console (firewalld stop)")
                await peer.send(p.Ack(msg.rid, f"firewalld (pid {os.getpid()}) is stopping"))
                os.kill(os.getpid(), signal.SIGTERM)  # the one way to stop: as on SIGTERM
            case _:
                await peer.send(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a console may not send {p.tag_of(msg)}")
                )

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

    async def pending_views(self) -> list[dict[str, Any]]:
        """Open actions, newest first, with their codes (consoles only; expire first).

        Arguments over :data:`ARGUMENTS_LISTED` bytes are cut to a preview, with their full size
        and hash: however big the paused calls, a listing stays far under the frame limit, and
        :class:`~daemon.protocol.ShowArguments` fetches the rest.
        """
        rows = self.store.open_pending()
        known = {row.action_id for row in rows}
        for gone in [a for a in self._argument_views if a not in known]:
            del self._argument_views[gone]
        if self._full is not None and self._full[0] not in known:
            self._full = None
        views = []
        for row in rows:
            shown = self._argument_views.get(row.action_id)
            if shown is None:
                shown = await self._run(ArgumentsView.of, row.params)
                self._argument_views[row.action_id] = shown
            session = self.sessions.get(row.session_id)
            views.append(
                {
                    "action_id": row.action_id,
                    "session_id": row.session_id,
                    "server": row.server,
                    "client": session.client if session else "",
                    "target": session.target if session else [],
                    "cwd": session.cwd if session else "",
                    "tool": row.tool,
                    # JSON text, not a map: JSON numbers can exceed what msgpack can carry.
                    # When cut: the start of that text, no longer JSON.
                    "arguments_json": shown.listed,
                    "arguments_cut": shown.cut,
                    "arguments_bytes": shown.size,
                    "arguments_sha256": shown.sha256,
                    "rule": row.rule,
                    "reason": row.reason,
                    "created": row.created,
                    "deadline": row.deadline,
                    "attempts_left": row.attempts_left,
                    "code": self.pending.code_of(row),
                    "held_until": self._held.get(row.action_id, 0.0),
                }
            )
        return views

    async def _arguments_piece(self, msg: p.ShowArguments) -> p.Message:
        """One piece of an open action's full arguments, or why not."""
        row = self.store.get_pending(msg.action_id)
        if row is None or row.status != "pending":
            return p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}")
        if self._full is None or self._full[0] != row.action_id:
            self._full = None  # let the last one go before making the next
            self._full = (row.action_id, await self._run(shown_arguments, row.params))
        data = self._full[1]
        if not 0 <= msg.offset <= len(data):
            return p.Error(msg.rid, p.E_BAD_REQUEST, f"offset {msg.offset} is outside 0..{len(data)}")
        view = self._argument_views.get(row.action_id)
        if view is None:
            view = self._argument_views[row.action_id] = await self._run(ArgumentsView.of, row.params, data)
        piece = data[msg.offset : msg.offset + ARGUMENTS_PIECE]
        return p.ArgumentsPiece(msg.rid, row.action_id, msg.offset, len(data), view.sha256, piece)

    @staticmethod
    async def _run(func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on a thread when its input is big: parsing and hashing tens of MB of
        arguments must not hold up other sessions' decisions."""
        if sum(len(a) for a in args if isinstance(a, bytes)) < _INLINE:
            return func(*args)
        return await anyio.to_thread.run_sync(func, *args)


#: Arguments over this many bytes of JSON are cut from listings.
ARGUMENTS_LISTED = 16 * 1024
#: How much of cut arguments a listing still carries.
ARGUMENTS_PREVIEW = 2 * 1024
#: Bytes of arguments per :class:`~daemon.protocol.ArgumentsPiece`.
ARGUMENTS_PIECE = 8 * 1024 * 1024
#: Params smaller than this are handled on the event loop (a thread hop costs more).
_INLINE = 256 * 1024


def shown_arguments(params: bytes) -> bytes:
    """What a console shows of a paused call: its arguments, as UTF-8 JSON text.

    The retry of an approved call adds ``inputResponses``: judged, and shown, as one more argument.
    """
    value = json.loads(params)
    shown = value.get("arguments") or {}
    if isinstance(shown, dict) and "inputResponses" in value:
        shown = {**shown, "inputResponses": value["inputResponses"]}
    try:
        return json.dumps(shown, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (sent as an escape): keep it an escape, still exact
        return json.dumps(shown).encode()


@dataclass(frozen=True, slots=True)
class ArgumentsView:
    """How a listing shows one action's arguments: whole, or cut with their size and hash."""

    listed: str
    cut: bool
    size: int
    sha256: str

    @classmethod
    def of(cls, params: bytes, text: bytes | None = None) -> ArgumentsView:
        """The view of a paused call's params (``text``: its :func:`shown_arguments`, if known)."""
        data = shown_arguments(params) if text is None else text
        digest = hashlib.sha256(data).hexdigest()
        if len(data) <= ARGUMENTS_LISTED:
            return cls(data.decode(), False, len(data), digest)
        return cls(data[:ARGUMENTS_PREVIEW].decode("utf-8", "ignore"), True, len(data), digest)
