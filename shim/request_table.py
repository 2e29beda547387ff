"""The daemon link's state and its request table: every request with its deadline, the records the
daemon must not miss, and the messages re-sent after a reconnect (see :mod:`shim.daemon_link`)."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon import protocol as p
from shim.loop import EventLoop, Timer

log = logging.getLogger("mcp-action-firewall")

Callback = Callable[[p.Message | None, str], None]

_DOWN, _HANDSHAKE, _READY = "down", "handshake", "ready"
#: Records kept for a daemon that is away (one per approved call whose fate it has not heard).
_MAX_RELIABLE = 4096


class _Request:
    __slots__ = ("message", "callback", "deadline")

    def __init__(self, message: p.Message, callback: Callback, deadline: float) -> None:
        self.message = message
        self.callback = callback
        self.deadline = deadline


class RequestTable:
    """The link's state, and its requests from their sending to their answer or deadline."""

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

    def new_rid(self) -> int:
        """A request id no other message of this link uses."""
        rid = self._next_rid
        self._next_rid += 1
        return rid

    @property
    def unacknowledged(self) -> int:
        """Reliable records the daemon has not acknowledged yet."""
        return len(self._reliable)

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

    def _rearm(self) -> None:
        """Deadlines changed (a start allowance ended, a welcome refreshed them): look again now."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._expire()

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

    if TYPE_CHECKING:

        def _send(self, message: p.Message, rid: int | None) -> None: ...

        def _lost(self, reason: str) -> None: ...
