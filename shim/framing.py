"""Newline-delimited framing: chunks read from a pipe in, lines (or pieces of a streamed line) out.

Sans-IO, so that any chunking can be tested. A line is assembled before it is handed on, up to a
size limit (a :class:`LineTooLong` past it, with its ends kept), unless its reader chooses to
relay it as it arrives (:meth:`LineSplitter.offer`): then it comes out as :class:`LinePart`
pieces, and is never held whole.
"""

from __future__ import annotations

#: How much of each end of a line is kept when the line itself is not (for a response's id).
_KEEP = 4096


class LineTooLong:
    """A line over the reader's limit: skipped, but its ends are kept to answer its request."""

    def __init__(self, size: int, head: bytes, tail: bytes) -> None:
        self.size = size
        self.head = head
        self.tail = tail

    def __str__(self) -> str:
        return f"line of {self.size} bytes is over the limit"


class LinePart:
    """A piece of a line relayed as it arrives instead of whole (see :meth:`LineSplitter.stream`).

    ``last`` marks the piece that the newline ended; ``tail`` is then the line's last bytes (at
    most 4 KiB, without the newline), where JavaScript serialisers put a response's id.
    """

    __slots__ = ("data", "last", "tail")

    def __init__(self, data: bytes, last: bool = False, tail: bytes = b"") -> None:
        self.data = data
        self.last = last
        self.tail = tail


class LineSplitter:
    """Turns chunks into newline-delimited lines, of any size up to ``max_line``.

    A line still unfinished past ``stream_after`` bytes is offered (:meth:`offer`) to be relayed
    as it arrives: assembled, a 10 MB line is held twice (its pieces, then the joined line) and
    reaches its reader only once it is complete. A line taken (:meth:`stream`) comes out of
    :meth:`feed` as :class:`LinePart` pieces and has no size limit (the reader's backpressure
    bounds what is held of it); a line not taken is assembled like any other.
    """

    def __init__(self, max_line: int, stream_after: int | None = None) -> None:
        self._max = max_line
        self._stream_after = stream_after
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self._streaming = False
        self._offered = False
        self._head = b""
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes | LineTooLong | LinePart]:
        """The lines completed by ``chunk``, in order (an over-long one as a :class:`LineTooLong`),
        and the pieces of a streamed line (as :class:`LinePart`) where it falls among them."""
        out: list[bytes | LineTooLong | LinePart] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if self._streaming:
                self._tail = _keep_tail(self._tail, piece)
                if nl >= 0:
                    out.append(LinePart(piece, True, self._tail))
                elif piece:
                    out.append(LinePart(piece))
            elif self._skipping:
                self._size += len(piece)
                self._tail = _keep_tail(self._tail, piece)
            elif self._size + len(piece) > self._max:
                held = b"".join(self._parts)
                self._head = (held[:_KEEP] + piece[:_KEEP])[:_KEEP]
                self._tail = _keep_tail(held[-_KEEP:], piece)
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
            self._parts, self._size, self._streaming, self._offered = [], 0, False, False
            start = nl + 1

    def offer(self) -> bytes | None:
        """The head (first 4 KiB) of an unfinished line that has passed ``stream_after``; once a line.

        Call it after :meth:`feed`, once the lines that came before this one were handled (their
        answers may change whether this one can be streamed); then :meth:`stream` the line, or
        do nothing and it is assembled as usual.
        """
        if (
            self._stream_after is None
            or self._size < self._stream_after
            or self._offered
            or self._streaming
            or self._skipping
        ):
            return None
        self._offered = True
        head = b""
        for part in self._parts:
            head += part[: _KEEP - len(head)]
            if len(head) == _KEEP:
                break
        return head

    def stream(self) -> list[bytes]:
        """Relay the offered line as it arrives: returns what is held of it, and :meth:`feed` the rest."""
        held = self._parts
        self._tail = b""
        for part in held[-_KEEP:]:  # enough parts for the last _KEEP bytes, however small each is
            self._tail = _keep_tail(self._tail, part)
        self._parts, self._size, self._streaming = [], 0, True
        return held

    def end(self) -> list[bytes | LineTooLong]:
        """At end of file: a last line without a newline is still a line.

        A streamed line cut short yields nothing more: whoever streams it knows that it is open.
        """
        last: list[bytes | LineTooLong] = []
        if self._skipping:
            last.append(LineTooLong(self._size, self._head, self._tail))
        elif self._parts:
            last.append(b"".join(self._parts))
        self._parts, self._size, self._skipping, self._streaming, self._offered = [], 0, False, False, False
        return last


def _keep_tail(tail: bytes, piece: bytes) -> bytes:
    """The last :data:`_KEEP` bytes of ``tail + piece``, without copying a big ``piece`` whole."""
    if len(piece) >= _KEEP:
        return piece[-_KEEP:]
    return (tail + piece)[-_KEEP:]
