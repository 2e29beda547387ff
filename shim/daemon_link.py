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
from collections import deque
from collections.abc import Callable

from daemon import protocol as p
from shim.loop import EventLoop, Timer

log = logging.getLogger("mcp-action-firewall")

Callback = Callable[[p.Message | None, str], None]

_DOWN, _HANDSHAKE, _READY = "down", "handshake", "ready"
#: Records kept for a daemon that is away (one per approved call whose fate it has not heard).
_MAX_RELIABLE = 4096
#: How often the link tries the socket while a daemon it started is coming up.
_START_POLL = 0.02


class _Request:
    __slots__ = ("message", "callback", "deadline")

    def __init__(self, message: p.Message, callback: Callback, deadline: float) -> None:
        self.message = message
        self.callback = callback
        self.deadline = deadline


class DaemonLink:
    """A self-healing request/response channel to the daemon."""

    def __init__(
        self,
        loop: EventLoop,
        socket_path: str,
        hello: p.Hello,
        *,
        autostart: bool = True,
        timeout: float = 5.0,
        start_timeout: float = 20.0,
    ) -> None:
        self._loop = loop
        self._path = socket_path
        self._hello = hello
        self._autostart = autostart
        self.timeout = timeout
        self.start_timeout = start_timeout
        # Until when a daemon this link started may still be coming up (monotonic; 0: none).
        self._starting_until = 0.0
        self._started: subprocess.Popen[bytes] | None = None
        self._state = _DOWN
        self._sock: socket.socket | None = None
        self._decoder = p.FrameDecoder()
        self._out: deque[bytes] = deque()
        self._queued: dict[int, _Request] = {}  # waiting for a connection
        self._inflight: dict[int, _Request] = {}  # sent, waiting for an answer
        self._sticky: dict[str, p.Message] = {}  # re-sent after every (re)connect
        # Records the daemon must not miss (what became of an approved call), by key, each kept
        # until the daemon acknowledges its rid, and re-sent after every (re)connect.
        self._reliable: dict[str, p.Outcome] = {}
        self._reliable_rids: dict[int, str] = {}
        #: Called with an answer that came after its request had given up (see Firewall).
        self.on_late: Callable[[p.Message], None] | None = None
        #: Called with what the daemon sends unasked (an approval made in a console).
        self.on_push: Callable[[p.Message], None] | None = None
        #: Called once connected (after the welcome), and when the connection is lost.
        self.on_ready: Callable[[], None] | None = None
        self.on_down: Callable[[], None] | None = None
        #: Called with the rid of an :class:`~daemon.protocol.Ack` that answers no request;
        #: returns whether it took it (see shim.leases).
        self.on_ack: Callable[[int], bool] | None = None
        self._next_rid = 1
        self._backoff = 0.01
        self._last_spawn = -1e9
        self._closed = False
        self._retry: Timer | None = None
        # One timer for the earliest deadline, not one per request: a cancelled timer stays in the
        # loop's heap until it is due, so at 20,000 calls/s with a 5 s deadline that heap held
        # 100,000 dead timers (megabytes, and a log-time push and pop per call).
        self._deadline_timer: Timer | None = None
        self.session_id: str | None = None
        self.policy_error: str | None = None
        self._token: str | None = None
        # The second connection, for the audit records of leased calls (see shim.leases): the
        # daemon reads it every few milliseconds instead of waking for each record.
        self._audit: socket.socket | None = None
        self._audit_out = bytearray()

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

    def request(self, make: Callable[[int], p.Message], callback: Callback) -> None:
        """Send ``make(rid)``; ``callback`` gets the answer or ``(None, reason)`` exactly once."""
        rid = self._next_rid
        self._next_rid += 1
        req = _Request(make(rid), callback, time.monotonic() + self.timeout)
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(self.timeout, self._expire)
        if self._state != _READY:
            self._queued[rid] = req
            return
        self._inflight[rid] = req
        self._send(req.message, rid)

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        """Send a message that expects no answer. A ``sticky`` one is re-sent after a reconnect."""
        if sticky is not None:
            self._sticky[sticky] = message
        if self._state == _READY:
            self._send(message, None)

    @property
    def ready(self) -> bool:
        """Connected and welcomed: a request is sent now, not queued until a reconnect."""
        return self._state == _READY

    def stick(self, key: str, message: p.Message | None) -> None:
        """Keep ``message`` to send after every (re)connect, without sending it now (``None``
        forgets ``key``)."""
        if message is None:
            self._sticky.pop(key, None)
        else:
            self._sticky[key] = message

    def notify_reliable(self, key: str, message: p.Outcome) -> None:
        """Send a record that must reach the daemon even if it restarts: kept (in place of an
        earlier record under the same ``key``) until the daemon acknowledges it, re-sent after a
        reconnect. The daemon takes a record it has already seen as a no-op."""
        rid = self._next_rid
        self._next_rid += 1
        message = message._replace(rid=rid)
        self._reliable.pop(key, None)  # re-inserted: records go out in the order they were made
        self._reliable[key] = message
        if len(self._reliable) > _MAX_RELIABLE:  # only while the daemon stays away for very long
            lost = next(iter(self._reliable))
            del self._reliable[lost]
            log.error("too many records wait for firewalld; the oldest, for %s, is dropped", lost)
        self._reliable_rids[rid] = key
        if self._state == _READY:
            self._send(message, None)

    @property
    def connected(self) -> bool:
        """Connected and welcomed."""
        return self._state == _READY

    @property
    def clear_to_send(self) -> bool:
        """Connected, and nothing waits to be written to the audit channel: a record sent now
        reaches the kernel now."""
        return self._state == _READY and self._audit is not None and not self._audit_out

    def new_rid(self) -> int:
        """A request id no other message of this link uses."""
        rid = self._next_rid
        self._next_rid += 1
        return rid

    def send_now(self, frame: bytes) -> None:
        """Send an encoded frame of audit records on the audit channel, if connected (else it is
        the caller's to keep: it sends it again once :attr:`on_ready` says the link is back)."""
        sock = self._audit
        if self._state != _READY or sock is None:
            return
        if not self._audit_out:
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(f"the audit connection to the firewall daemon was lost ({exc.strerror or exc})")
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self._loop.add_writer(sock.fileno(), self._flush_audit)
        self._audit_out += frame

    def _flush_audit(self) -> None:
        sock = self._audit
        if sock is None:
            return
        try:
            sent = sock.send(self._audit_out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"the audit connection to the firewall daemon was lost ({exc.strerror or exc})")
            return
        del self._audit_out[:sent]
        if not self._audit_out:
            self._loop.remove_writer(sock.fileno())

    def _open_audit(self) -> None:
        """Open the audit channel (a Unix socket connects at once, or fails at once)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self._path)
            sock.send(p.encode(p.Hello(role=p.ROLE_AUDIT, resume=self._token)))
        except OSError as exc:
            sock.close()
            log.warning("no audit connection to firewalld (%s): every call is asked about", exc)
            return
        self._audit = sock
        self._audit_out.clear()
        self._loop.add_reader(sock.fileno(), self._audit_readable)

    def _audit_readable(self) -> None:
        """The daemon sends nothing on the audit channel: anything readable is its end."""
        sock = self._audit
        if sock is None:
            return
        try:
            data = sock.recv(1 << 12)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("the audit connection to the firewall daemon was lost")

    @property
    def unacknowledged(self) -> int:
        """Reliable records the daemon has not acknowledged yet."""
        return len(self._reliable)

    # -- internals -------------------------------------------------------------------------

    def _acknowledged(self, rid: int) -> bool:
        key = self._reliable_rids.pop(rid, None)
        if key is None:
            return False
        record = self._reliable.get(key)
        if record is not None and record.rid == rid:
            del self._reliable[key]
        return True

    def _finish(self, rid: int, message: p.Message | None, reason: str) -> bool:
        req = self._inflight.pop(rid, None) or self._queued.pop(rid, None)
        if req is None:
            return False
        req.callback(message, reason)
        return True

    def _expire(self) -> None:
        """Fail the requests past their deadline; wake again for the next one.

        Every request gets the same timeout, so each table is in deadline order: only its head
        needs looking at.
        """
        self._deadline_timer = None
        now = time.monotonic()
        while self._inflight:
            rid, req = next(iter(self._inflight.items()))
            if req.deadline > now:
                break
            self._finish(rid, None, "the firewall daemon did not answer in time")
        while self._queued:
            rid, req = next(iter(self._queued.items()))
            if self._queued_deadline(req) > now:
                break
            if self._starting_until > req.deadline:
                reason = f"the firewall daemon did not start within {self.start_timeout:g} s"
            else:
                reason = "the firewall daemon did not answer in time"
            self._finish(rid, None, reason)
        heads = []
        if self._inflight:
            heads.append(next(iter(self._inflight.values())).deadline)
        if self._queued:
            heads.append(self._queued_deadline(next(iter(self._queued.values()))))
        if heads and self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(max(0.0, min(heads) - now), self._expire)

    def _queued_deadline(self, req: _Request) -> float:
        """A request waiting for a connection also waits for a daemon this link started (the
        same extension for all, so the table stays in deadline order)."""
        return max(req.deadline, self._starting_until)

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
        if queued and self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(self.timeout, self._expire)

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
