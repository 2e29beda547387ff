"""firewalld's connections: who may connect, and which handlers serve each kind of peer.

Every connection is checked (same uid as the daemon), then says hello as a shim, a shim's audit
channel or a console; shims are served by :mod:`daemon.shim_requests`, consoles by
:mod:`daemon.console_requests`, audit channels by :mod:`daemon.audit_channel`. Each connection is
served by its own task and closed in a ``finally``.
"""

from __future__ import annotations

import json
import logging

import anyio
from anyio.abc import SocketStream

from daemon import protocol as p
from daemon.audit_channel import AUDIT_EVERY, AuditChannels
from daemon.console_requests import ConsoleRequests
from daemon.peer import Peer, peer_credentials
from daemon.sessions import Session
from daemon.shim_requests import ShimRequests

log = logging.getLogger("firewalld")


class PeerRefused(Exception):
    """Raised when a connection breaks the handshake."""


class Connections(ShimRequests, ConsoleRequests, AuditChannels):
    """Serves one connection, from its hello to its close."""

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
