"""The shim's loop primitives: line splitting of any size, over-long lines, and ordered writes."""

from __future__ import annotations

import os
import threading

from shim.loop import EventLoop, LineSplitter, LineTooLong, OutStream


def split(chunks: list[bytes], limit: int = 1 << 30) -> list[bytes | LineTooLong]:
    """Feed chunks, then end of file."""
    splitter = LineSplitter(limit)
    out: list[bytes | LineTooLong] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.end()


def test_thirty_megabyte_line_in_pipe_sized_chunks() -> None:
    """Lines far above 64 KiB come out whole, however the bytes were chunked."""
    big = b"x" * (30 * 1024 * 1024)
    data = big + b"\nend"
    assert split([data[i : i + 65536] for i in range(0, len(data), 65536)]) == [big, b"end"]


def test_over_long_line_keeps_its_ends_and_the_next_line_is_read() -> None:
    """A line over the limit is reported once, with its head and tail (where a request id is)."""
    line = b'{"jsonrpc":"2.0","id":7,' + b"y" * 300_000 + b',"end":1}'
    out = split([line[:100_000], line[100_000:] + b"\nok\n"], limit=100_000)
    assert isinstance(out[0], LineTooLong)
    assert out[0].size == len(line)
    assert out[0].head.startswith(b'{"jsonrpc":"2.0","id":7,') and out[0].tail.endswith(b',"end":1}')
    assert out[1:] == [b"ok"]


def test_out_stream_writes_whole_lines_in_order_under_backpressure() -> None:
    """Lines bigger than the pipe are queued and written in order, without blocking the loop."""
    r, w = os.pipe()
    loop = EventLoop()
    out = OutStream(loop, w)
    lines = [bytes([65 + i]) * 300_000 for i in range(8)]
    for line in lines:
        assert out.write_line(line)
    assert out.queued > 0  # the pipe could not take it all: the rest waits in the queue
    received = bytearray()

    def read_all() -> None:
        while chunk := os.read(r, 1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    out.close()  # closes once drained; the reader then sees end of file

    def check() -> None:
        if out.closed:
            loop.stop()
        else:
            loop.call_later(0.01, check)

    loop.call_later(0.0, check)
    loop.call_later(10.0, loop.stop)  # a bound, in case the stream never drains
    loop.run()
    reader.join()
    os.close(r)
    assert bytes(received) == b"".join(line + b"\n" for line in lines)
