"""The shim's event loop: one thread, ``selectors``, non-blocking buffered writes.

Why not threads: a tools/call used to cross three threads (agent reader, daemon link, target
reader), and every handoff between Python threads costs a GIL switch; and why not asyncio: its
import alone is over the start-up budget. One thread waiting on every descriptor at once has no
handoffs and starts in a few milliseconds.

Writers never block the loop: what the kernel does not take at once is queued, and the loop
writes the rest when the descriptor is writable. A reader whose destination has queued more than
:data:`HIGH_WATER` bytes is paused until it drains, so a slow peer slows its sender instead of
growing memory without bound.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import stat
import time
from collections import deque
from collections.abc import Callable

#: Queued bytes above which the producing side is paused.
HIGH_WATER = 16 * 1024 * 1024
#: Read size. Pipes hand over at most their buffer per read; asking for more is free.
CHUNK = 1 << 20
#: The first read of a burst. A read of CHUNK makes CPython allocate 1 MiB (an mmap), shrink it
#: (mremap) and free it (munmap): three system calls and fresh page faults for a 200-byte message.
#: 64 KiB stays under malloc's mmap threshold; reads grow to CHUNK only while they come back full.
SMALL_CHUNK = 1 << 16
_IOV_MAX = 512


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Ask Linux for a bigger pipe buffer (fewer wake-ups for big messages); best effort."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


class Timer:
    """A callback due at a point in time; :meth:`cancel` makes it a no-op."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback."""
        self.cancelled = True


class EventLoop:
    """A minimal reactor: readers, writers and timers on one selector."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.stopped = False

    def _update(self, fd: int) -> None:
        events = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        try:
            key = self._sel.get_key(fd)
        except KeyError:
            if events:
                self._sel.register(fd, events)
            return
        if not events:
            self._sel.unregister(fd)
        elif key.events != events:
            self._sel.modify(fd, events)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``fd`` is readable."""
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        """Stop watching ``fd`` for reading."""
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``fd`` is writable."""
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        """Stop watching ``fd`` for writing."""
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``delay`` seconds (on the loop's thread)."""
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def run(self) -> None:
        """Run until :meth:`stop`."""
        sel, readers, writers, timers = self._sel, self._readers, self._writers, self._timers
        while not self.stopped:
            timeout = None
            if timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            for key, mask in sel.select(timeout):
                fd = key.fd
                if mask & selectors.EVENT_READ:
                    reader = readers.get(fd)
                    if reader is not None:
                        reader()
                if mask & selectors.EVENT_WRITE:
                    writer = writers.get(fd)
                    if writer is not None:
                        writer()
            if timers:
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if not timer.cancelled:
                        timer.callback()

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self.stopped = True


class OutStream:
    """The one writer of an output descriptor: whole lines, in order, never blocking the loop."""

    def __init__(self, loop: EventLoop, fd: int, on_drained: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: deque[memoryview] = deque()
        self.queued = 0
        self.closed = False
        self._close_when_drained = False
        self._on_drained = on_drained
        # A terminal or file stays blocking (and shared with whoever else uses it); a pipe or a
        # socket that is ours alone becomes non-blocking.
        mode = os.fstat(fd).st_mode
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(fd, False)

    def write_line(self, line: bytes) -> bool:
        """Queue ``line`` and a newline. Returns False once the other end has gone away."""
        if self.closed or self._close_when_drained:
            return False
        if self._queue:
            self._queue.append(memoryview(line))
            self._queue.append(memoryview(b"\n"))
            self.queued += len(line) + 1
            return True
        try:
            written = os.writev(self._fd, [line, b"\n"])
        except BlockingIOError:
            written = 0
        except OSError:
            self._fail()
            return False
        total = len(line) + 1
        if written == total:
            return True
        if written < len(line):
            self._queue.append(memoryview(line)[written:])
            self._queue.append(memoryview(b"\n"))
        else:
            self._queue.append(memoryview(b"\n"))
        self.queued += total - written
        self._loop.add_writer(self._fd, self._flush)
        return True

    def _flush(self) -> None:
        try:
            written = os.writev(self._fd, list(itertools.islice(self._queue, _IOV_MAX)))
        except BlockingIOError:
            return
        except OSError:
            self._fail()
            return
        self.queued -= written
        while written:
            head = self._queue[0]
            if written >= len(head):
                written -= len(head)
                self._queue.popleft()
            else:
                self._queue[0] = head[written:]
                written = 0
        if not self._queue:
            self._loop.remove_writer(self._fd)
            if self._close_when_drained:
                self._really_close()
            elif self._on_drained is not None:
                self._on_drained()

    def _fail(self) -> None:
        self._queue.clear()
        self.queued = 0
        self._really_close()

    def close(self) -> None:
        """Close once everything queued is written (the peer then sees end of file)."""
        if self._queue:
            self._close_when_drained = True
        else:
            self._really_close()

    def _really_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_writer(self._fd)
        try:
            os.close(self._fd)
        except OSError:
            pass


#: How much of each end of an over-long line is kept (for the id of a request to answer).
_KEEP = 4096


class LineTooLong:
    """A line over the reader's limit: skipped, but its ends are kept to answer its request."""

    def __init__(self, size: int, head: bytes, tail: bytes) -> None:
        self.size = size
        self.head = head
        self.tail = tail

    def __str__(self) -> str:
        return f"line of {self.size} bytes is over the limit"


class LineSplitter:
    """Turns chunks into newline-delimited lines, of any size up to ``max_line``."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self._head = b""
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes | LineTooLong]:
        """The lines completed by ``chunk``, in order (an over-long one as a :class:`LineTooLong`)."""
        out: list[bytes | LineTooLong] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if self._skipping:
                self._size += len(piece)
                self._tail = (self._tail + piece[-_KEEP:])[-_KEEP:]
            elif self._size + len(piece) > self._max:
                held = b"".join(self._parts)
                self._head = (held[:_KEEP] + piece[:_KEEP])[:_KEEP]
                self._tail = (held[-_KEEP:] + piece[-_KEEP:])[-_KEEP:]
                self._size += len(piece)
                self._parts, self._skipping = [], True
            elif nl >= 0:
                if self._parts:
                    self._parts.append(piece)
                    out.append(b"".join(self._parts))
                else:
                    out.append(piece)
            elif piece:
                self._parts.append(piece)
                self._size += len(piece)
            if nl < 0:
                return out
            if self._skipping:
                out.append(LineTooLong(self._size, self._head, self._tail))
                self._skipping = False
            self._parts, self._size = [], 0
            start = nl + 1

    def end(self) -> list[bytes | LineTooLong]:
        """At end of file: a last line without a newline is still a line."""
        last: list[bytes | LineTooLong] = []
        if self._skipping:
            last.append(LineTooLong(self._size, self._head, self._tail))
        elif self._parts:
            last.append(b"".join(self._parts))
        self._parts, self._size, self._skipping = [], 0, False
        return last
