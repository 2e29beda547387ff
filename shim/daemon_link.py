"""The shim's connection to firewalld: requests with deadlines, reconnect, and start on demand.

One background thread owns the socket's read side: it connects (starting the daemon if none
answers), says hello, then reads answers and matches them to requests by ``rid``. Any thread may
send. Every request ends in exactly one callback: the daemon's answer, or ``None`` with a reason
when the deadline passes or the connection drops. The caller treats ``None`` as *no*: a security
decision that does not arrive in time is a refusal (fail closed).
"""

from __future__ import annotations

import logging
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from daemon import protocol as p

log = logging.getLogger("mcp-action-firewall")

Callback = Callable[[p.Message | None, str], None]


@dataclass(slots=True)
class _Request:
    message: p.Message
    callback: Callback
    deadline: float


class DaemonLink:
    """A self-healing request/response channel to the daemon."""

    def __init__(
        self,
        socket_path: str,
        hello: p.Hello,
        *,
        autostart: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self._path = socket_path
        self._hello = hello
        self._autostart = autostart
        self.timeout = timeout
        self._state = threading.Lock()  # guards the fields below; never held while sending
        self._send_lock = threading.Lock()  # one writer of the socket
        self._sock: socket.socket | None = None
        self._queued: dict[int, _Request] = {}  # waiting for a connection
        self._inflight: dict[int, _Request] = {}  # sent, waiting for an answer
        self._sticky: dict[str, p.Message] = {}  # re-sent after every (re)connect
        self._next_rid = 1
        self._closed = threading.Event()
        self._last_spawn = 0.0
        self.session_id: str | None = None
        self._resume_token: str | None = None
        self.policy_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="daemon-link", daemon=True)

    # -- public API ------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._thread.start()

    def close(self) -> None:
        """Stop reconnecting and fail whatever is still waiting."""
        self._closed.set()
        with self._state:
            sock, self._sock = self._sock, None
        if sock is not None:
            _shutdown(sock)
        self._fail_all("the firewall is shutting down")

    def request(self, make: Callable[[int], p.Message], callback: Callback) -> None:
        """Send ``make(rid)``; ``callback`` gets the answer or ``(None, reason)`` exactly once."""
        with self._state:
            rid = self._next_rid
            self._next_rid += 1
            req = _Request(make(rid), callback, time.monotonic() + self.timeout)
            sock = self._sock
            if sock is None:
                self._queued[rid] = req
                return
            self._inflight[rid] = req
        self._send(sock, req.message)

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        """Send a message that expects no answer. A ``sticky`` one is re-sent after a reconnect."""
        with self._state:
            if sticky is not None:
                self._sticky[sticky] = message
            sock = self._sock
        if sock is not None:
            self._send(sock, message)

    # -- internals -------------------------------------------------------------------------

    def _send(self, sock: socket.socket, message: p.Message) -> None:
        try:
            frame = p.encode(message)
        except p.ProtocolError as exc:
            self._answer(getattr(message, "rid", None), None, str(exc))
            return
        try:
            with self._send_lock:
                sock.sendall(frame)
        except OSError:
            _shutdown(sock)  # the reader thread notices and fails what is in flight

    def _answer(self, rid: int | None, message: p.Message | None, reason: str) -> None:
        if rid is None:
            return
        with self._state:
            req = self._inflight.pop(rid, None) or self._queued.pop(rid, None)
        if req is not None:
            req.callback(message, reason)

    def _fail_all(self, reason: str) -> None:
        with self._state:
            reqs = list(self._inflight.values()) + list(self._queued.values())
            self._inflight.clear()
            self._queued.clear()
        for req in reqs:
            req.callback(None, reason)

    def _expire(self, now: float) -> float:
        """Fail requests past their deadline; return the seconds until the next deadline."""
        expired: list[_Request] = []
        nearest = 0.5
        with self._state:
            for table in (self._inflight, self._queued):
                for rid, req in list(table.items()):
                    if req.deadline <= now:
                        expired.append(table.pop(rid))
                    else:
                        nearest = min(nearest, req.deadline - now)
        for req in expired:
            req.callback(None, "the firewall daemon did not answer in time")
        return nearest

    def _run(self) -> None:
        backoff = 0.01
        while not self._closed.is_set():
            sock = self._connect()
            if sock is None:
                self._expire(time.monotonic())
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.01
            try:
                self._serve(sock)
            except (OSError, p.ProtocolError) as exc:
                if not self._closed.is_set():
                    log.warning("connection to firewalld lost: %s", exc)
            finally:
                with self._state:
                    self._sock = None
                _shutdown(sock)
                sock.close()
            self._fail_inflight("the connection to the firewall daemon was lost")

    def _fail_inflight(self, reason: str) -> None:
        with self._state:
            reqs = list(self._inflight.values())
            self._inflight.clear()
        for req in reqs:
            req.callback(None, reason)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(self._path)
        except OSError as exc:
            sock.close()
            if self._autostart and isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                self._spawn_daemon()
            return None
        return sock

    def _spawn_daemon(self) -> None:
        now = time.monotonic()
        if now - self._last_spawn < 5.0:
            return
        self._last_spawn = now
        cmd = [sys.executable, "-m", "daemon", "run", "--socket", self._path, "--detach"]
        try:
            subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            log.info("started firewalld (%s)", " ".join(cmd))
        except OSError as exc:
            log.error("could not start firewalld: %s", exc)

    def _serve(self, sock: socket.socket) -> None:
        decoder = p.FrameDecoder()
        hello = self._hello
        if self._resume_token is not None:
            hello = replace(hello, resume=self._resume_token)
        sock.sendall(p.encode(hello))
        welcome = self._read_one(sock, decoder)
        if isinstance(welcome, p.Error):
            raise p.ProtocolError(f"firewalld refused the session: {welcome.message}")
        if not isinstance(welcome, p.Welcome):
            raise p.ProtocolError(f"expected welcome, got {welcome.TAG}")
        self.session_id = welcome.session_id
        self._resume_token = welcome.token
        self.policy_error = welcome.policy_error
        if welcome.policy_error:
            log.error("firewall policy: %s", welcome.policy_error)
        with self._state:
            self._sock = sock
            queued = list(self._queued.items())
            self._queued.clear()
            self._inflight.update(queued)
            sticky = list(self._sticky.values())
        for message in sticky:
            self._send(sock, message)
        for _, req in queued:
            self._send(sock, req.message)
        log.debug("connected to firewalld as session %s", welcome.session_id)

        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        try:
            while not self._closed.is_set():
                wait = self._expire(time.monotonic())
                if not sel.select(wait):
                    continue
                data = sock.recv(1 << 20)
                if not data:
                    raise OSError("firewalld closed the connection")
                for message in decoder.feed(data):
                    self._answer(getattr(message, "rid", None), message, "")
        finally:
            sel.close()

    def _read_one(self, sock: socket.socket, decoder: p.FrameDecoder) -> p.Message:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise OSError("firewalld closed the connection during the handshake")
            messages = decoder.feed(data)
            if messages:
                return messages[0]
        raise OSError("firewalld did not answer the handshake")


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
