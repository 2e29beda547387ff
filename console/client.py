"""A blocking console connection to firewalld (for the scriptable commands and the TUI's workers).

Exceptions::

    ConsoleError          anything that stops a request (printed as one line, never a traceback)
    └── DaemonUnreachable  no daemon answers on the socket
"""

from __future__ import annotations

import functools
import hashlib
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon import protocol as p

M = TypeVar("M", bound=p.Message)


class ConsoleError(Exception):
    """A console request failed; the message says why in plain words."""


class DaemonUnreachable(ConsoleError):
    """Raised when nothing answers on the daemon's socket."""


@dataclass(frozen=True, slots=True)
class FullArguments:
    """One pending action's arguments in full: UTF-8 JSON text, its size in bytes and SHA-256."""

    action_id: str
    text: str
    size: int
    sha256: str


class ConsoleClient:
    """One console session with the daemon."""

    def __init__(self, socket_path: str | None = None, timeout: float = 5.0) -> None:
        self.socket_path = socket_path or p.default_socket_path()
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._decoder = p.FrameDecoder()
        self._queue: list[p.Message] = []
        #: Events pushed while a request waited for its answer, kept for :meth:`next_event`.
        self._events: deque[p.Event] = deque(maxlen=1024)
        self._rid = 0

    def connect(self) -> None:
        """Connect and say hello as a console.

        Raises:
            DaemonUnreachable: no daemon runs on the socket.
            ConsoleError: the daemon refused the console.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise DaemonUnreachable(
                f"firewalld is not running (no answer on {self.socket_path}: {exc.strerror or exc}). "
                "Start it with `firewalld`, or use any MCP server through mcp-action-firewall."
            ) from None
        self._sock = sock
        self._send(p.Hello(role=p.ROLE_CONSOLE))
        welcome = self._receive()
        if not isinstance(welcome, p.Welcome):
            raise ConsoleError(f"firewalld refused the console: {getattr(welcome, 'message', welcome)}")

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ConsoleClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, message: p.Message) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(p.encode(message))
        except OSError as exc:
            raise ConsoleError(f"lost the connection to firewalld: {exc}") from None

    def _receive(self, timeout: float | None = None) -> p.Message:
        assert self._sock is not None
        while not self._queue:
            self._sock.settimeout(self._timeout if timeout is None else timeout)
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                raise
            except OSError as exc:
                raise ConsoleError(f"lost the connection to firewalld: {exc}") from None
            if not data:
                raise ConsoleError("firewalld closed the connection")
            try:
                self._queue.extend(self._decoder.feed(data))
            except p.ProtocolError as exc:
                raise ConsoleError(f"firewalld sent something unreadable: {exc}") from None
        return self._queue.pop(0)

    def _call(self, make: Callable[[int], p.Message], expect: type[M]) -> M:
        self._rid += 1
        rid = self._rid
        self._send(make(rid))
        while True:
            try:
                reply = self._receive()
            except TimeoutError:
                raise ConsoleError("firewalld did not answer in time") from None
            if isinstance(reply, p.Event):
                self._events.append(reply)  # pushed meanwhile: keep it for next_event/events
                continue
            if getattr(reply, "rid", None) != rid:
                continue  # a late answer to an earlier request
            if isinstance(reply, p.Error):
                raise ConsoleError(reply.message)
            if not isinstance(reply, expect):
                raise ConsoleError(f"unexpected answer {p.tag_of(reply)}")
            return reply

    def pending(self) -> p.PendingList:
        """Sessions and pending actions, codes included."""
        return self._call(p.ListPending, p.PendingList)

    def arguments(self, action_id: str) -> FullArguments:
        """The full arguments of a pending action (a listing cuts big ones), fetched piece by piece.

        Raises:
            ConsoleError: no such pending action, or the pieces do not add up to what the daemon
                said (size and SHA-256 are checked).
        """
        data = bytearray()
        first: p.ArgumentsPiece | None = None
        while True:
            offset = len(data)
            piece = self._call(functools.partial(_show, action_id=action_id, offset=offset), p.ArgumentsPiece)
            first = first or piece
            if (piece.offset, piece.total, piece.sha256) != (offset, first.total, first.sha256):
                raise ConsoleError(f"the arguments of {action_id} changed while they were read")
            data += piece.data
            if len(data) >= piece.total:
                break
            if not piece.data:
                raise ConsoleError(f"firewalld sent an empty piece of the arguments of {action_id}")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != first.total or digest != first.sha256:
            raise ConsoleError(f"the arguments of {action_id} do not match their size and SHA-256")
        return FullArguments(action_id, bytes(data).decode(), len(data), digest)

    def approve(self, action_id: str) -> str:
        """Approve a held action (its chat gets the real result); returns the daemon's message."""
        return self._call(lambda rid: p.ApproveAction(rid, action_id), p.Ack).message

    def grant(
        self,
        action_id: str,
        scope: str,
        *,
        minutes: float = 0.0,
        matches: list[dict[str, Any]] | None = None,
        base_sha256: str = "",
    ) -> str:
        """Approve a paused action with a scope (see :class:`daemon.protocol.MakeGrant`)."""
        return self._call(
            lambda rid: p.MakeGrant(rid, action_id, scope, float(minutes), matches, base_sha256), p.Ack
        ).message

    def preview_rule(self, action_id: str, matches: list[dict[str, Any]] | None = None) -> p.RulePreview:
        """The change an "always" grant of this action would make to its policy file."""
        return self._call(lambda rid: p.PreviewRule(rid, action_id, matches), p.RulePreview)

    def grants(self) -> list[dict[str, Any]]:
        """The live grants, newest first."""
        return self._call(p.ListGrants, p.GrantList).grants

    def revoke(self, grant_id: str) -> str:
        """End a grant now; returns the daemon's confirmation."""
        return self._call(lambda rid: p.RevokeGrant(rid, grant_id), p.Ack).message

    def deny(self, action_id: str) -> str:
        """Deny a pending action; returns the daemon's confirmation."""
        return self._call(lambda rid: p.DenyAction(rid, action_id), p.Ack).message

    def pins(self, server: str | None = None) -> list[dict[str, object]]:
        """Pinned tool definitions and those under review (of one server, or all)."""
        return self._call(lambda rid: p.ListPins(rid, server), p.PinList).pins

    def review_tool(self, review_id: str, accept: bool) -> str:
        """Accept (re-pin) or reject a tool definition under review; returns the daemon's message."""
        return self._call(lambda rid: p.ReviewTool(rid, review_id, accept), p.Ack).message

    def log(
        self,
        limit: int = 50,
        session_id: str | None = None,
        server: str | None = None,
        tool: str | None = None,
    ) -> list[dict[str, object]]:
        """Newest audit rows first."""
        return self._call(lambda rid: p.QueryLog(rid, limit, session_id, server, tool), p.LogRows).rows

    def subscribe(self) -> None:
        """Ask for :class:`daemon.protocol.Event` pushes."""
        self._call(p.Subscribe, p.Ack)

    def events(self, timeout: float) -> Iterator[p.Event]:
        """Events pushed within ``timeout`` seconds (after :meth:`subscribe`)."""
        while self._events:
            yield self._events.popleft()
        try:
            while True:
                message = self._receive(timeout)
                if isinstance(message, p.Event):
                    yield message
        except TimeoutError:
            return

    def next_event(self, timeout: float) -> p.Event | None:
        """The next pushed event (one that arrived during a request first), or None after ``timeout`` s.

        Raises:
            ConsoleError: the connection was lost.
        """
        if self._events:
            return self._events.popleft()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self._receive(left)
            except TimeoutError:
                return None
            if isinstance(message, p.Event):
                return message


def _show(rid: int, *, action_id: str, offset: int) -> p.ShowArguments:
    return p.ShowArguments(rid, action_id, offset)
