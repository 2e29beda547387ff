"""The shim's connection to firewalld: requests with deadlines, reconnect, and start on demand.

It lives on the shim's event loop (one thread, no locks). Every request ends in exactly one
callback: the daemon's answer, or ``None`` with a reason when the deadline passes or the
connection drops. The caller treats ``None`` as *no*: a security decision that does not arrive
in time is a refusal (fail closed). While the daemon is away, requests wait for a connection
until their deadline, and the link keeps reconnecting with backoff, starting the daemon if none
answers; after a reconnect it resumes its session with the token the daemon gave it.

A daemon this link started gets ``start_timeout`` to come up, not the decision deadline: at
login an MCP client starts every configured server at once, and on a busy 2-vCPU machine ten
shims, ten servers and a daemon importing pydantic share the CPUs for several seconds. The
requests waiting for it wait that long (still refused if it never comes), and the link polls
the socket every few milliseconds meanwhile instead of backing off.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

from daemon import protocol as p
from shim.audit_link import AuditChannel
from shim.request_table import _DOWN, _HANDSHAKE, _READY

log = logging.getLogger("mcp-action-firewall")
#: How often the link tries the socket while a daemon it started is coming up.
_START_POLL = 0.02


class DaemonLink(AuditChannel):
    """A self-healing request/response channel to the daemon."""

    # -- public API ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (or start the daemon) from the loop."""
        self._connect()

    def close(self) -> None:
        """Stop reconnecting and fail whatever is still waiting."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._drop()
        for table in (self._inflight, self._queued):
            for rid in list(table):
                self._finish(rid, None, "the firewall is shutting down")

    # -- internals -------------------------------------------------------------------------

    def _send(self, message: p.Message, rid: int | None) -> None:
        try:
            frame = p.encode(message)
        except p.ProtocolError as exc:
            if rid is not None:
                self._finish(rid, None, str(exc))
            return
        if not self._out:
            assert self._sock is not None
            try:
                sent = self._sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(f"the connection to the firewall daemon was lost ({exc.strerror or exc})")
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self._loop.add_writer(self._sock.fileno(), self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        assert self._sock is not None
        while self._out:
            head = self._out[0]
            try:
                sent = self._sock.send(head)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"the connection to the firewall daemon was lost ({exc.strerror or exc})")
                return
            if sent < len(head):
                self._out[0] = head[sent:]
                return
            self._out.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def _connect(self) -> None:
        self._retry = None
        if self._closed:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self._path)  # a Unix socket connects at once, or fails at once
        except OSError as exc:
            sock.close()
            if self._autostart and isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                self._spawn_daemon()
            self._check_started()
            if time.monotonic() < self._starting_until:
                self._retry = self._loop.call_later(_START_POLL, self._connect)
            else:
                self._retry = self._loop.call_later(self._backoff, self._connect)
                self._backoff = min(self._backoff * 2, 1.0)
            return
        self._sock = sock
        self._state = _HANDSHAKE
        self._decoder = p.FrameDecoder()
        self._loop.add_reader(sock.fileno(), self._on_readable)
        hello = self._hello._replace(resume=self._token) if self._token else self._hello
        self._send(hello, None)

    def _spawn_daemon(self) -> None:
        now = time.monotonic()
        if now - self._last_spawn < 5.0:
            return
        self._last_spawn = now
        cmd = [sys.executable, "-m", "daemon", "run", "--socket", self._path, "--detach"]
        try:
            self._started = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            log.info("started firewalld (%s)", " ".join(cmd))
            self._starting_until = now + self.start_timeout
        except OSError as exc:
            log.error("could not start firewalld: %s", exc)

    def _check_started(self) -> None:
        """Reap a daemon this link started that exited; stop waiting for it if it failed.

        Status 0 is a daemon that found another one starting (it holds the lock): keep waiting.
        """
        if self._started is None or self._started.poll() is None:
            return
        status, self._started = self._started.returncode, None
        if status != 0:
            self._starting_until = 0.0
            log.error(
                "firewalld exited at start with status %d; firewalld.log in its state directory says why "
                "(~/.local/state/mcp-action-firewall by default)",
                status,
            )
            self._rearm()  # what waited only for it is refused now

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)  # under malloc's mmap threshold (see shim.loop)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"the connection to the firewall daemon was lost ({exc.strerror or exc})")
            return
        if not data:
            self._lost("the connection to the firewall daemon was lost")
            return
        try:
            messages = self._decoder.feed(data)
        except p.ProtocolError as exc:
            self._lost(f"the firewall daemon sent something unreadable ({exc})")
            return
        for message in messages:
            if self._state == _HANDSHAKE:
                self._welcomed(message)
            else:
                rid = getattr(message, "rid", None)
                if rid is None:
                    if self.on_push is not None:
                        try:
                            self.on_push(message)
                        except Exception as exc:  # the link must outlive any handler
                            log.error("internal error on a message from firewalld: %r", exc)
                    continue
                if self._finish(rid, message, ""):
                    continue
                if isinstance(message, p.Ack) and self.on_ack is not None and self.on_ack(rid):
                    continue
                if not (isinstance(message, p.Ack) and self._acknowledged(rid)) and self.on_late:
                    try:
                        self.on_late(message)  # the answer to a request that gave up waiting
                    except Exception as exc:  # the link must outlive any handler
                        log.error("internal error on a late answer from firewalld: %r", exc)

    def _welcomed(self, message: p.Message) -> None:
        if not isinstance(message, p.Welcome):
            text = message.message if isinstance(message, p.Error) else p.tag_of(message)
            self._lost(f"the firewall daemon refused the session: {text}")
            return
        self._state = _READY
        self._backoff = 0.01
        self._starting_until = 0.0
        self.session_id, self._token = message.session_id, message.token
        self.policy_error = message.policy_error
        if message.policy_error:
            log.error("firewall policy: %s", message.policy_error)
        log.debug("connected to firewalld as session %s", message.session_id)
        for sticky in list(self._sticky.values()):
            self._send(sticky, None)
        for record in list(self._reliable.values()):
            self._send(record, None)
        if self._hello.leases:
            self._open_audit()
        if self.on_ready is not None:
            self.on_ready()
        self._send(p.Resynced(), None)  # everything it should know of this session is on its way
        queued, self._queued = self._queued, {}
        # A request that waited for the connection gets the daemon's usual time to answer it
        # (its own deadline may have passed while a daemon came up).
        fresh = time.monotonic() + self.timeout
        for rid, req in queued.items():
            req.deadline = max(req.deadline, fresh)
            self._inflight[rid] = req
            self._send(req.message, rid)
        if queued:
            self._rearm()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if self._state != _DOWN and self.on_down is not None:
            self.on_down()
        self._state = _DOWN
        audit, self._audit = self._audit, None
        if audit is not None:
            self._loop.remove_reader(audit.fileno())
            self._loop.remove_writer(audit.fileno())
            audit.close()
        self._out.clear()
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
            sock.close()

    def _lost(self, reason: str) -> None:
        if self._state == _DOWN:
            return
        if not self._closed:
            log.warning("%s", reason)
        self._drop()
        for rid in list(self._inflight):
            self._finish(rid, None, reason)
        if not self._closed:
            self._retry = self._loop.call_later(self._backoff, self._connect)
            self._backoff = min(self._backoff * 2, 1.0)
