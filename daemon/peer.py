"""One connection to firewalld: who is at the other end, and framed messages in batches.

Frames are read in chunks and decoded together, so a shim with eight calls in flight is answered
with one read, one database commit and one write instead of eight of each.

A shim's connection, once past the handshake, is served by :meth:`Peer.serve`: a reader callback
that stays registered with the event loop and answers each batch where it is read. anyio's
stream would instead register and unregister the socket with epoll for every message and hand
the data to a task through a future; measured through the whole chain (agent, shim, daemon,
server), the callback takes about 20 µs off the median allowed call (see bench/README.md). It is
the one place the daemon uses asyncio directly: anyio runs on it (``anyio.run``'s default backend).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from anyio.abc import SocketStream

from daemon import protocol as p

#: Read size: one read usually holds every frame a peer has sent since the last one. Kept under
#: malloc's mmap threshold: a 1 MiB read buffer costs an mmap, an mremap and a munmap per read.
_CHUNK = 1 << 16


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    return peer_credentials(sock)[1]


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The pid (0 where the system does not say) and uid of the process at the other end."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        return int(pid), int(uid)
    # macOS and the BSDs: LOCAL_PEERCRED at level SOL_LOCAL (0) gives a struct xucred.
    data = sock.getsockopt(0, 0x001, 76)
    _version, uid = struct.unpack_from("Ii", data)
    return 0, int(uid)


class Budget:
    """Bytes of unfinished frames that all connections together may hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class FrameStalled(p.ProtocolError):
    """Raised when a frame does not complete within its deadline."""


class OverBudget(p.ProtocolError):
    """Raised when a connection's unfinished frame would take more than the shared budget."""


class Peer:
    """A framed connection: batches of messages in, whole frames out, one writer at a time.

    Args:
        stream: The accepted connection.
        budget: Shared by every connection: what their unfinished frames may hold together.
        max_frame: Largest frame accepted (raise :attr:`decoder`'s ``max_frame`` after hello).
        frame_timeout: Seconds a frame may take from its first byte to its last.
    """

    def __init__(
        self,
        stream: SocketStream,
        budget: Budget | None = None,
        *,
        max_frame: int = p.MAX_FRAME,
        frame_timeout: float = 15.0,
    ) -> None:
        self.stream = stream
        self._raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self.decoder = p.FrameDecoder(max_frame)
        self._budget = budget if budget is not None else Budget(1 << 62)
        self._held = 0  # of the budget
        self._frame_timeout = frame_timeout
        self._frame_deadline = 0.0  # monotonic; set while a frame is unfinished
        self._lock = anyio.Lock()
        self._outbox: deque[memoryview] = deque()  # answers serve() could not send at once
        self._start_flush: Callable[[], None] | None = None  # set while serve() runs
        #: While :meth:`serve_lazily` runs: read and handle what has arrived, now (at a stop).
        self.read_now: Callable[[], None] | None = None

    def _feed(self, data: bytes) -> list[p.Message]:
        """Decode what arrived, and account for what an unfinished frame now holds.

        Raises:
            OverBudget: the unfinished frame would take more than the shared budget.
            daemon.protocol.ProtocolError: the peer broke the framing.
        """
        messages = self.decoder.feed(data)
        buffered = self.decoder.buffered
        if buffered != self._held:
            self._budget.held += buffered - self._held
            self._held = buffered
            if buffered and self._budget.held > self._budget.limit:
                raise OverBudget(
                    f"unfinished frames of all connections would hold over {self._budget.limit} bytes"
                )
        if not buffered:
            self._frame_deadline = 0.0
        elif messages or not self._frame_deadline:  # a new frame began
            self._frame_deadline = time.monotonic() + self._frame_timeout
        return messages

    def release(self) -> None:
        """Give back what this connection holds of the budget (once it is closed)."""
        self._budget.held -= self._held
        self._held = 0

    def _stalled(self) -> FrameStalled:
        return FrameStalled(f"a frame did not complete within {self._frame_timeout:g} s")

    @property
    def backlogged(self) -> bool:
        """Answers are waiting for the peer to read them (and :meth:`serve` is not reading)."""
        return bool(self._outbox)

    async def receive_batch(self) -> list[p.Message]:
        """Every message that has arrived (at least one).

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            daemon.protocol.ProtocolError: the peer broke the framing or sent an unknown message.
        """
        while True:
            if self._frame_deadline:
                with anyio.move_on_after(self._frame_deadline - time.monotonic()):
                    data = await self.stream.receive(_CHUNK)
                    messages = self._feed(data)
                    if messages:
                        return messages
                    continue
                raise self._stalled()
            messages = self._feed(await self.stream.receive(_CHUNK))
            if messages:
                return messages

    def push(self, message: p.Message) -> None:
        """Send a message from synchronous code, after everything sent before it.

        Only for a connection that :meth:`serve` serves: what the socket does not take at once
        waits in the outbox that serve() flushes, so frames never interleave.

        Raises:
            anyio.BrokenResourceError: the connection failed.
        """
        data = p.encode(message)
        if self._outbox:
            self._outbox.append(memoryview(data))
            return
        try:
            sent = self._raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if sent < len(data):
            self._outbox.append(memoryview(data)[sent:])
            if self._start_flush is not None:
                self._start_flush()

    async def serve_lazily(self, answer: Callable[[list[p.Message]], None], delay: float) -> None:
        """Read what the peer sends at most every ``delay`` seconds, never answering: the first
        byte of a quiet spell wakes this process, the rest waits in the socket until the delay
        is over. For a stream whose messages nobody waits for (the audit records of leased calls),
        so a busy peer wakes the daemon a hundred times a second, not once per message.

        While the peer keeps sending, the next read is a timer, not a wake-up by the peer's next
        byte: a wake-up by a write runs this process on the writer's CPU (Linux places the task a
        write wakes next to the writer), where the shim is about to wake its server; a busy daemon
        there held that call back by a scheduler tick (about one leased call in a hundred stalled
        1.5 ms). Only a read that finds nothing waits for a byte again.

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            anyio.BrokenResourceError: the connection failed.
            daemon.protocol.ProtocolError: the peer broke the framing or sent an unknown message.
        """
        loop = asyncio.get_running_loop()
        fd = self._raw.fileno()
        ended: asyncio.Future[None] = loop.create_future()

        def fail(exc: BaseException) -> None:
            loop.remove_reader(fd)
            if not ended.done():
                ended.set_exception(exc)

        pending: list[asyncio.TimerHandle] = []  # the one read due (never two at once)

        def later() -> None:
            pending.append(loop.call_later(delay, drain))

        def readable() -> None:
            loop.remove_reader(fd)
            later()

        def drain() -> None:
            while pending:  # a read made now (read_now) replaces the one that was due
                pending.pop().cancel()
            loop.remove_reader(fd)
            if ended.done():
                return
            batch: list[p.Message] = []
            got = False
            while True:
                try:
                    data = self._raw.recv(_CHUNK)
                except BlockingIOError:
                    break
                except OSError as exc:
                    fail(anyio.BrokenResourceError(str(exc)))
                    break
                if not data:
                    fail(anyio.EndOfStream())
                    break
                got = True
                try:
                    batch += self._feed(data)
                except Exception as exc:  # a ProtocolError: raised from here below
                    fail(exc)
                    return
            try:
                if batch:
                    answer(batch)  # what was read before an end of stream still counts
            except Exception as exc:
                fail(exc)
                return
            if ended.done():
                return
            if got:
                later()  # still sending: read again on the timer
            else:
                loop.add_reader(fd, readable)

        loop.add_reader(fd, readable)
        self.read_now = drain
        try:
            await ended
        finally:
            self.read_now = None
            loop.remove_reader(fd)
            while pending:
                pending.pop().cancel()

    def abort(self) -> None:
        """End the connection now (its handler sees the end of the stream and closes it)."""
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    async def send(self, *messages: p.Message) -> None:
        """Send messages as one write, never interleaved with another task's."""
        if self._start_flush is not None:  # served: one writer, in order, through the outbox
            for message in messages:
                self.push(message)
            return
        data = b"".join(p.encode(m) for m in messages)
        if not self._lock.locked():
            # Nobody is mid-frame: the non-blocking socket almost always takes it all at once,
            # without the stream's trips round the event loop (its checkpoint and the lock's).
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if sent == len(data):
                return
            data = data[sent:]
        async with self._lock:
            await self.stream.send(data)

    async def serve(
        self,
        answer: Callable[[list[p.Message]], list[p.Message]],
        prepare: Callable[[list[p.Message]], Awaitable[None] | None] | None = None,
    ) -> None:
        """Answer batches with ``answer``, called as soon as they are read, until the peer goes.

        ``answer`` runs on the event loop's thread and must not block; its replies are written
        at once. ``prepare``, when given, sees each batch first and may return an awaitable (work
        too slow for the loop's thread, such as judging a huge call on a worker thread): the batch
        is then answered when it is done, and nothing more is read from this peer until then,
        while every other peer is served. Whatever the peer does not take is queued and reading
        stops until it is sent, so a peer that never reads its answers cannot make the queue grow.

        Raises:
            anyio.EndOfStream: the peer closed the connection.
            anyio.BrokenResourceError: the connection failed.
            daemon.protocol.ProtocolError: the peer broke the framing or sent an unknown message.
        """
        loop = asyncio.get_running_loop()
        fd = self._raw.fileno()
        ended: asyncio.Future[None] = loop.create_future()
        pending: set[asyncio.Task[None]] = set()  # the slow batches' tasks (kept from the GC)
        timer: asyncio.TimerHandle | None = None  # armed while a frame is unfinished
        armed_for = 0.0

        def stalled() -> None:
            fail(self._stalled())

        def fail(exc: BaseException) -> None:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            if not ended.done():
                ended.set_exception(exc)

        def flush() -> None:  # the writer callback, only while answers wait in the outbox
            try:
                while self._outbox:
                    head = self._outbox[0]
                    sent = self._raw.send(head)
                    if sent < len(head):
                        self._outbox[0] = head[sent:]
                        return
                    self._outbox.popleft()
            except BlockingIOError:
                return
            except OSError as exc:
                fail(anyio.BrokenResourceError(str(exc)))
                return
            loop.remove_writer(fd)
            loop.add_reader(fd, readable)

        def readable() -> None:
            try:
                data = self._raw.recv(_CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                fail(anyio.BrokenResourceError(str(exc)))
                return
            if not data:
                fail(anyio.EndOfStream())
                return
            nonlocal timer, armed_for
            try:
                batch = self._feed(data)
                if self._frame_deadline != armed_for:  # only on the rare path of split frames
                    if timer is not None:
                        timer.cancel()
                    armed_for, timer = self._frame_deadline, None
                    if armed_for:
                        timer = loop.call_at(loop.time() + armed_for - time.monotonic(), stalled)
                slow = prepare(batch) if prepare is not None else None
            except Exception as exc:  # a ProtocolError, or a bug: raised from serve() below
                fail(exc)
                return
            if slow is not None:  # the batch is answered once its slow part is done; read no more
                loop.remove_reader(fd)
                pending.add(loop.create_task(later(slow, batch)))
                return
            respond(batch)

        async def later(slow: Awaitable[None], batch: list[p.Message]) -> None:
            try:
                await slow
            except Exception as exc:
                fail(exc)
                return
            finally:
                pending.discard(asyncio.current_task())
            if not ended.done():
                loop.add_reader(fd, readable)
                respond(batch)

        def respond(batch: list[p.Message]) -> None:
            try:
                replies = answer(batch)
                if not replies:
                    return
                out = p.encode(replies[0]) if len(replies) == 1 else b"".join(map(p.encode, replies))
            except Exception as exc:  # a ProtocolError, or a bug: raised from serve() below
                fail(exc)
                return
            # Nothing else is done after this send: the shim it wakes often runs on this CPU, and
            # whatever this process still has to do would run before the shim's next message.
            if self._outbox:  # behind what push() queued
                self._outbox.append(memoryview(out))
                return
            try:
                sent = self._raw.send(out)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                fail(anyio.BrokenResourceError(str(exc)))
                return
            if sent < len(out):
                self._outbox.append(memoryview(out)[sent:])
                start_flush()

        def start_flush() -> None:
            loop.remove_reader(fd)  # until the peer has read what it was sent
            loop.add_writer(fd, flush)

        loop.add_reader(fd, readable)
        self._start_flush = start_flush
        try:
            await ended
        finally:
            self._start_flush = None
            if timer is not None:
                timer.cancel()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            for task in pending:
                task.cancel()
