"""Newline-delimited frames over raw file descriptors.

MCP's stdio transport is one JSON-RPC message per line, split on the newline byte only. Lines can
be tens of MB (a file read, a screenshot), so the reader keeps the pieces of a partial line in a
list and joins them once, instead of growing one buffer (which is quadratic), and the writer hands
the kernel the line and its newline in one ``writev`` so a 10 MB line is never copied to add a byte.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

#: Read size. Pipes hand over at most their buffer per read; asking for more is free.
CHUNK = 1 << 20


class LineTooLong(Exception):
    """Raised (by :meth:`LineReader.lines`) for a line over the reader's limit; the line is skipped."""

    def __init__(self, size: int) -> None:
        super().__init__(f"line of at least {size} bytes is over the limit")
        self.size = size


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Ask Linux for a bigger pipe buffer (fewer context switches for big messages); best effort."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


class LineReader:
    """Yields complete lines (without the newline) read from ``fd`` until end of file."""

    def __init__(self, fd: int, max_line: int) -> None:
        self._fd = fd
        self._max_line = max_line

    def lines(self) -> Iterator[bytes | LineTooLong]:
        """Iterate over lines; an over-long line is reported once as a :class:`LineTooLong` item.

        A final line without a newline at end of file is still yielded: a peer that exits right
        after writing must not lose its last message.
        """
        parts: list[bytes] = []
        size = 0
        skipping = False
        fd = self._fd
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError:
                chunk = b""
            if not chunk:
                if parts and not skipping:
                    yield b"".join(parts)
                return
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    rest = chunk[start:] if start else chunk
                    if not skipping and rest:
                        size += len(rest)
                        if size > self._max_line:
                            yield LineTooLong(size)
                            parts, skipping = [], True
                        else:
                            parts.append(rest)
                    break
                piece = chunk[start:nl]
                if skipping:
                    skipping = False
                elif parts:
                    if size + len(piece) > self._max_line:
                        yield LineTooLong(size + len(piece))
                    else:
                        parts.append(piece)
                        yield b"".join(parts)
                elif len(piece) > self._max_line:
                    yield LineTooLong(len(piece))
                else:
                    yield piece
                parts, size = [], 0
                start = nl + 1


class LineWriter:
    """The one writer of an output stream: whole lines, never interleaved, from any thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.closed = False

    def write_line(self, line: bytes) -> bool:
        """Write ``line`` plus a newline. Returns False once the other end has gone away."""
        with self._lock:
            if self.closed:
                return False
            try:
                _write_all(self._fd, line)
            except OSError:
                self.closed = True
                return False
            return True

    def close(self) -> None:
        """Close the descriptor (the peer sees end of file); later writes return False."""
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    os.close(self._fd)
                except OSError:
                    pass


def _write_all(fd: int, line: bytes) -> None:
    view = memoryview(line)
    pending: list[memoryview | bytes] = [view, b"\n"]
    while pending:
        written = os.writev(fd, pending)
        while written:
            head = pending[0]
            if written >= len(head):
                written -= len(head)
                pending.pop(0)
            else:
                pending[0] = memoryview(head)[written:]
                written = 0
