"""firewalld's socket: who may connect, and what each kind of peer may ask.

Every connection is checked (same uid as the daemon), then says hello as a shim or a console.
A shim may only judge calls, confirm codes and withdraw actions *of its own session*; it never
receives a code. A console may list pending actions with their codes, deny them and read the
audit log. Each connection is served by its own task and closed in a ``finally``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
import time
import unicodedata
from typing import Any

import anyio
from anyio.abc import SocketListener, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from daemon import protocol as p
from daemon.pending import PendingActions
from daemon.policies import PolicyCache
from daemon.sessions import Session, Sessions
from daemon.settings import DaemonSettings
from daemon.store import PendingRow, Store

log = logging.getLogger("firewalld")

#: A peer must say hello this quickly.
_HELLO_TIMEOUT = 5.0


class PeerRefused(Exception):
    """Raised when a connection comes from another user or breaks the handshake."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    # macOS and the BSDs: LOCAL_PEERCRED at level SOL_LOCAL (0) gives a struct xucred.
    data = sock.getsockopt(0, 0x001, 76)
    _version, uid = struct.unpack_from("Ii", data)
    return int(uid)


class _Peer:
    """One connection: a framed reader and a locked writer."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self._lock = anyio.Lock()

    async def receive(self) -> p.Message:
        header = await self.reader.receive_exactly(4)
        (size,) = struct.unpack(">I", header)
        if size > p.MAX_FRAME:
            raise p.FrameTooLarge(f"frame of {size} bytes is over the limit")
        return p.decode(await self.reader.receive_exactly(size))

    async def send(self, message: p.Message) -> None:
        frame = p.encode(message)
        async with self._lock:
            await self.stream.send(frame)


class Firewalld:
    """The daemon's state and its connection handlers."""

    def __init__(self, settings: DaemonSettings, store: Store, pending: PendingActions) -> None:
        self.settings = settings
        self.store = store
        self.pending = pending
        self.sessions = Sessions(store)
        self.policies = PolicyCache()
        self._consoles: set[_Peer] = set()
        self._connections = 0
        self._busy = 0  # requests being answered right now (a stop waits for them)
        self._reload = anyio.Event()
        self._uid = os.getuid()

    async def serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections and run housekeeping until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._housekeeping, name="housekeeping")
            task_status.started()
            async with listener:
                while True:
                    try:
                        stream = await listener.accept()
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return  # closed for a stop: the caller cancels the rest
                    tg.start_soon(self._connection, stream, name="connection")

    def reload(self) -> None:
        """Re-read every policy file now (SIGHUP)."""
        self._reload.set()

    async def drain(self, limit: float) -> None:
        """Wait (at most ``limit`` seconds) for the requests being answered to be answered."""
        with anyio.move_on_after(limit):
            while self._busy:  # noqa: ASYNC110 - a bounded wait, once, at shutdown
                await anyio.sleep(0.01)

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            with anyio.move_on_after(1.0):
                await self._reload.wait()
            forced, self._reload = self._reload.is_set(), anyio.Event()
            if forced:
                log.info("re-reading the policy files (SIGHUP)")
            for error in self.policies.recheck_all(force=forced):
                await self.broadcast(p.Event("policy", error))
            changed = bool(self.pending.expire())
            for session_id in self.store.sessions_with_open_actions():
                if not self.sessions.is_live(session_id):
                    changed |= bool(self.pending.abandon_session(session_id))
            if changed:
                await self.broadcast(p.Event("pending", "expired"))
            # A long-lived daemon serves thousands of chats: forget those long closed.
            open_sessions = set(self.store.sessions_with_open_actions())
            for session_id in self.sessions.prune(time.time() - 3600, open_sessions):
                self.pending.forget_session(session_id)
            now = time.time()
            if now - last_prune > 3600:
                last_prune = now
                max_age = self.settings.audit_max_age_days * 86400
                self.store.prune_audit(now - max_age, self.settings.audit_max_rows)

    async def broadcast(self, event: p.Event) -> None:
        """Tell every subscribed console that something changed."""
        for peer in list(self._consoles):
            try:
                with anyio.fail_after(2.0):
                    await peer.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError):
                self._consoles.discard(peer)

    async def _connection(self, stream: SocketStream) -> None:
        peer = _Peer(stream)
        self._connections += 1
        session: Session | None = None
        try:
            if self._connections > self.settings.max_connections:
                await peer.send(p.Error(0, p.E_LIMIT, "firewalld is serving too many connections"))
                return
            uid = peer_uid(stream.extra(anyio.abc.SocketAttribute.raw_socket))
            if uid != self._uid:
                log.warning("refused a connection from uid %d", uid)
                return
            with anyio.fail_after(_HELLO_TIMEOUT):
                hello = await peer.receive()
            if not isinstance(hello, p.Hello):
                raise PeerRefused("the first message must be hello")
            if hello.proto != p.PROTOCOL_VERSION:
                await peer.send(
                    p.Error(0, p.E_VERSION, f"protocol {hello.proto} is not {p.PROTOCOL_VERSION}")
                )
                return
            if hello.role == p.ROLE_SHIM:
                session = await self._welcome_shim(peer, hello)
                while True:
                    request = await peer.receive()
                    self._busy += 1
                    try:
                        await self._shim_request(peer, session, request)
                    finally:
                        self._busy -= 1
            elif hello.role == p.ROLE_CONSOLE:
                await peer.send(p.Welcome(session_id="", token=""))
                while True:
                    request = await peer.receive()
                    self._busy += 1
                    try:
                        await self._console_request(peer, request)
                    finally:
                        self._busy -= 1
            else:
                raise PeerRefused(f"unknown role {hello.role!r}")
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ):
            pass
        except (p.ProtocolError, PeerRefused, TimeoutError) as exc:
            log.warning("dropped a connection: %s", exc)
        except OSError as exc:
            log.warning("connection error: %s", exc)
        finally:
            self._connections -= 1
            self._consoles.discard(peer)
            if session is not None:
                self.sessions.close(session)
                self.store.audit("session_close", session_id=session.session_id, server=session.server)
                await self.broadcast(p.Event("session", session.session_id))
            await stream.aclose()

    async def _welcome_shim(self, peer: _Peer, hello: p.Hello) -> Session:
        session, token = self.sessions.open(hello)
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

    async def _shim_request(self, peer: _Peer, session: Session, msg: p.Message) -> None:
        match msg:
            case p.Decide():
                verdict = self.decide(session, msg)
                await peer.send(verdict)
                if verdict.action != p.ALLOW:
                    await self.broadcast(p.Event("pending", verdict.action_id))
            case p.Confirm():
                result = self.pending.confirm(session.session_id, self._clean_code(session, msg.otp))
                if result.ok and result.action is not None:
                    reply = p.Confirmed(
                        msg.rid, True, "approved", result.action.action_id, result.action.params
                    )
                else:
                    reply = p.Confirmed(msg.rid, False, result.message)
                await peer.send(reply)
                await self.broadcast(p.Event("pending", "confirm"))
            case p.Outcome():
                self.store.audit(
                    "outcome",
                    session_id=session.session_id,
                    server=session.server,
                    action_id=msg.action_id,
                    decision="ok" if msg.ok else "error",
                    detail=msg.detail[:2000],
                )
            case p.Withdraw():
                if self.pending.withdraw(session.session_id, msg.action_id):
                    await self.broadcast(p.Event("pending", msg.action_id))
            case p.ToolsListed():
                if msg.first_page:
                    session.tools.clear()
                for tool in msg.tools[:10_000]:
                    name, annotations = tool.get("name"), tool.get("annotations")
                    if isinstance(name, str) and isinstance(annotations, dict):
                        session.tools[name] = annotations
            case p.ClientInfo():
                self.sessions.set_client(session, msg)
                await self.broadcast(p.Event("session", session.session_id))
            case _:
                await peer.send(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a shim may not send {msg.TAG}")
                )

    def _clean_code(self, session: Session, otp: str) -> str:
        """The code as typed by a human: full-width digits folded, a lost leading zero restored."""
        code = unicodedata.normalize("NFKC", otp)[:64]
        policy, _ = self.policies.get(session.config_path, session.server)
        if policy is not None and code.isdigit() and len(code) < policy.otp_length:
            code = code.zfill(policy.otp_length)  # the agent sent the code as a JSON number
        return code

    def decide(self, session: Session, msg: p.Decide) -> p.Verdict:
        """Judge one call, record the decision, and pause it if it needs approval."""
        try:
            params = json.loads(msg.params)
            tool = params["name"]
            arguments = params.get("arguments")
            if not isinstance(tool, str):
                raise TypeError("name")
        except (ValueError, KeyError, TypeError, AttributeError):
            return p.Verdict(msg.rid, p.DENY, "The call could not be read.", "malformed")
        policy, error = self.policies.get(session.config_path, session.server)
        if policy is None:
            session.denied += 1
            self.store.audit(
                "decision",
                session_id=session.session_id,
                server=session.server,
                tool=tool,
                decision=p.DENY,
                rule="policy-error",
                detail=error,
            )
            return p.Verdict(
                msg.rid, p.DENY, f"The firewall policy could not be loaded: {error}", "policy-error"
            )
        verdict = policy.decide(tool, arguments, session.tools.get(tool))
        if verdict.action == p.APPROVE:
            return self._pause(session, msg, tool, verdict.rule, verdict.reason, policy)
        if verdict.action == p.ALLOW:
            session.allowed += 1
        else:
            session.denied += 1
        self.store.audit(
            "decision",
            session_id=session.session_id,
            server=session.server,
            tool=tool,
            decision=verdict.action,
            rule=verdict.rule,
            detail=msg.params[:1000].decode("utf-8", "replace"),
        )
        return p.Verdict(msg.rid, verdict.action, verdict.reason, verdict.rule)

    def _pause(
        self, session: Session, msg: p.Decide, tool: str, rule: str, reason: str, policy: Any
    ) -> p.Verdict:
        now = time.time()
        refusal = None
        if self.pending.open_count(session.session_id) >= self.settings.max_pending_per_session:
            refusal = "Too many actions of this session are already waiting for approval."
        elif not session.prompt_allowed(self.settings.max_prompts_per_minute, now):
            refusal = "Too many approval requests from this session in the last minute (a flood); refused."
        if refusal is not None:
            session.denied += 1
            self.store.audit(
                "decision",
                session_id=session.session_id,
                server=session.server,
                tool=tool,
                decision=p.DENY,
                rule="limit",
                detail=refusal,
            )
            return p.Verdict(
                msg.rid, p.DENY, refusal + " Ask the user to deal with the waiting ones first.", "limit"
            )
        row: PendingRow = self.pending.create(
            session_id=session.session_id,
            server=session.server,
            tool=tool,
            params=msg.params,
            rule=rule,
            reason=reason,
            code_length=policy.otp_length,
            ttl=policy.otp_ttl_seconds,
            attempts=policy.otp_attempt_count,
        )
        session.paused += 1
        log.info("paused %s in %s as %s (%s)", tool, session.session_id, row.action_id, rule)
        return p.Verdict(msg.rid, p.APPROVE, reason, rule, row.action_id, row.deadline, row.attempts_left)

    # -- console requests --------------------------------------------------------------------

    async def _console_request(self, peer: _Peer, msg: p.Message) -> None:
        match msg:
            case p.ListPending():
                await peer.send(p.PendingList(msg.rid, self.sessions.views(), self.pending_views()))
            case p.DenyAction():
                row = self.pending.deny(msg.action_id)
                if row is None:
                    await peer.send(p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}"))
                else:
                    await peer.send(p.Ack(msg.rid, f"denied {row.action_id} ({row.tool})"))
                    await self.broadcast(p.Event("pending", row.action_id))
            case p.QueryLog():
                rows = self.store.query_audit(msg.limit, msg.session_id, msg.server, msg.tool)
                await peer.send(p.LogRows(msg.rid, rows))
            case p.Subscribe():
                self._consoles.add(peer)
                await peer.send(p.Ack(msg.rid, "subscribed"))
            case _:
                await peer.send(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a console may not send {msg.TAG}")
                )

    def pending_views(self) -> list[dict[str, Any]]:
        """Open actions, newest first, with their codes (consoles only)."""
        self.pending.expire()
        views = []
        for row in self.store.open_pending():
            session = self.sessions.get(row.session_id)
            params = json.loads(row.params)
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
                    "arguments_json": json.dumps(params.get("arguments", {}), ensure_ascii=False),
                    "rule": row.rule,
                    "reason": row.reason,
                    "created": row.created,
                    "deadline": row.deadline,
                    "attempts_left": row.attempts_left,
                    "code": self.pending.code_of(row),
                }
            )
        return views
