"""The shim's event loop: one thread, epoll (``poll`` elsewhere), non-blocking buffered writes.

Why not threads: a tools/call used to cross three threads (agent reader, daemon link, target
reader), and every handoff between Python threads costs a GIL switch; and why not asyncio: its
import alone is over the start-up budget. One thread waiting on every descriptor at once has no
handoffs and starts in a few milliseconds.

Writers never block the loop: what the kernel does not take at once is queued, and the loop
writes the rest when the descriptor is writable. A reader whose destination has queued more than
:data:`HIGH_WATER` bytes is paused until it drains, so a slow peer slows its sender instead of
growing memory without bound.

A big line may also be relayed as it arrives instead of whole (see :mod:`shim.framing`): its
pieces are written as they come (:meth:`OutStream.write_part`), and other lines for the same
descriptor wait until it ends.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import stat
import time
from collections import deque
from collections.abc import Callable

#: Queued bytes above which the producing side is paused. What is queued is the shim's own memory:
#: a 10 MB answer streamed to an agent that reads slowly is held up to this much (and one read),
#: within a budget of 25 MiB for the whole process.
HIGH_WATER = 1 << 20
#: Read size. Pipes hand over at most their buffer per read; asking for more is free.
CHUNK = 1 << 20
#: The first read of a burst. A read of CHUNK makes CPython allocate 1 MiB (an mmap), shrink it
#: (mremap) and free it (munmap): three system calls and fresh page faults for a 200-byte message.
#: 64 KiB stays under malloc's mmap threshold; reads grow to CHUNK only while they come back full.
SMALL_CHUNK = 1 << 16
_IOV_MAX = 512

# The poller: epoll itself, not ``selectors`` over it. A ``selectors`` call wraps each ready
# descriptor in a key object and a list, about 7 µs per loop turn on a small VM against 2.5 µs,
# and a leased call takes two or three turns. Elsewhere (macOS) ``poll``, whose timeout is in ms.
if hasattr(select, "epoll"):
    _new_poller = select.epoll
    _READ, _WRITE, _SCALE = select.EPOLLIN, select.EPOLLOUT, 1.0
else:  # pragma: no cover - not Linux
    _new_poller = select.poll  # type: ignore[assignment,misc]
    _READ, _WRITE, _SCALE = select.POLLIN, select.POLLOUT, 1000.0


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
        self._poller = _new_poller()
        self._registered: dict[int, int] = {}  # fd -> the events asked for
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        #: Descriptors epoll refuses (a regular file or /dev/null as stdin or stdout, as in
        #: ``mcp-action-firewall -- server < requests.jsonl``): always ready, so served every turn.
        self._always: set[int] = set()
        self.stopped = False

    def _update(self, fd: int) -> None:
        events = (_READ if fd in self._readers else 0) | (_WRITE if fd in self._writers else 0)
        if fd in self._always:
            if not events:
                self._always.discard(fd)
            return
        registered = self._registered.get(fd)
        if registered is None:
            if events:
                try:
                    self._poller.register(fd, events)
                except PermissionError:  # EPERM: a file, never "not ready"
                    self._always.add(fd)
                    return
                self._registered[fd] = events
            return
        if not events:
            del self._registered[fd]
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError):  # closed already: the kernel has forgotten it
                pass
        elif registered != events:
            self._registered[fd] = events
            self._poller.modify(fd, events)

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
        poll, readers, writers, timers = self._poller.poll, self._readers, self._writers, self._timers
        while not self.stopped:
            timeout: float | None = None
            if timers:
                timeout = max(0.0, timers[0][0] - time.monotonic()) * _SCALE
            if self._always:
                self._serve_always()
                timeout = 0.0
            try:
                ready = poll(timeout)
            except InterruptedError:  # pragma: no cover - Python retries EINTR itself
                continue
            for fd, mask in ready:
                # As selectors reads them: an error or a hang-up wakes the reader and the writer.
                if mask & ~_WRITE:
                    reader = readers.get(fd)
                    if reader is not None:
                        reader()
                if mask & ~_READ:
                    writer = writers.get(fd)
                    if writer is not None:
                        writer()
            if timers:
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if not timer.cancelled:
                        timer.callback()

    def _serve_always(self) -> None:
        """One turn for each always-ready descriptor (a reader at its end reads b"" and stops)."""
        for fd in list(self._always):
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
            writer = self._writers.get(fd)
            if writer is not None:
                writer()

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self.stopped = True


class OutStream:
    """The one writer of an output descriptor: whole lines, in order, never blocking the loop.

    A line may also be written in parts as it arrives (:meth:`begin_stream`, :meth:`write_part`,
    :meth:`end_stream`); ``queued`` counts what is waiting for the descriptor, not the lines held
    back until such a line ends.
    """

    def __init__(self, loop: EventLoop, fd: int, on_drained: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: deque[memoryview] = deque()
        self.queued = 0
        self.closed = False
        self._close_when_drained = False
        self._on_drained = on_drained
        self._held: list[bytes] | None = None  # lines written while a streamed line is open
        self.held = 0  # their size: the relay stops reading what would add to them past HIGH_WATER
        # A terminal or file stays blocking (and shared with whoever else uses it); a pipe or a
        # socket that is ours alone becomes non-blocking.
        mode = os.fstat(fd).st_mode
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(fd, False)

    def write_line(self, line: bytes) -> bool:
        """Queue ``line`` and a newline. Returns False once the other end has gone away.

        While a streamed line is open (:meth:`begin_stream`) the line is held, and written right
        after the streamed line's newline: nothing may land in the middle of another line.
        """
        if self.closed or self._close_when_drained:
            return False
        if self._held is not None:
            self._held.append(line)
            self.held += len(line) + 1
            return True
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

    def begin_stream(self) -> None:
        """Open a line that is written in parts as they arrive (:meth:`write_part`), not whole.

        A big line relayed as it arrives is never held whole in memory; the price is that the
        line is open on the descriptor until its last part, so every :meth:`write_line` meanwhile
        waits for :meth:`end_stream`.
        """
        if self._held is None:
            self._held = []

    def write_part(self, data: bytes) -> bool:
        """Queue ``data``, the next bytes of the open streamed line. False once the other end has gone."""
        if self.closed or self._close_when_drained:
            return False
        if self._queue:
            self._queue.append(memoryview(data))
            self.queued += len(data)
            return True
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._fail()
            return False
        if written < len(data):
            self._queue.append(memoryview(data)[written:])
            self.queued += len(data) - written
            self._loop.add_writer(self._fd, self._flush)
        return True

    def end_stream(self) -> bool:
        """End the streamed line with its newline, then write the lines held meanwhile, in order."""
        held, self._held = self._held, None
        self.held = 0
        if held is None:
            return not (self.closed or self._close_when_drained)
        ok = self.write_part(b"\n")
        for line in held:
            self.write_line(line)
        return ok

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
        if self._held is not None:
            self._held = []
        self.held = 0
        self.queued = 0
        self._really_close()

    def close(self) -> None:
        """Close once everything queued is written (the peer then sees end of file).

        An open streamed line is ended first, so that what was held behind it is written too.
        """
        self.end_stream()
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
