"""The shim's loop primitives: line splitting of any size, over-long lines, streamed lines, ordered writes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shim.framing import LinePart, LineSplitter, LineTooLong
from shim.loop import EventLoop, OutStream


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
    assert drain(loop, out, r) == b"".join(line + b"\n" for line in lines)


def drain(loop: EventLoop, out: OutStream, r: int) -> bytes:
    """Close ``out``, run the loop until it has written everything, and return what ``r`` received."""
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
    return bytes(received)


def stream_all(
    chunks: list[bytes], stream_after: int, limit: int = 1 << 30
) -> list[bytes | LineTooLong | LinePart]:
    """Feed chunks, streaming every line that is offered, then end of file."""
    splitter = LineSplitter(limit, stream_after)
    out: list[bytes | LineTooLong | LinePart] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
        if splitter.offer() is not None:
            out += [LinePart(part) for part in splitter.stream()]
    return out + splitter.end()


def test_unfinished_line_is_offered_once_past_the_threshold_then_assembled_if_not_taken() -> None:
    """The head of a line still arriving is offered once; a line not taken comes out whole as before."""
    splitter = LineSplitter(1 << 20, stream_after=100)
    assert splitter.feed(b"a\n{" + b"x" * 50) == [b"a"]
    assert splitter.offer() is None  # 51 bytes: under the threshold
    assert splitter.feed(b"y" * 5000) == []
    assert splitter.offer() == (b"{" + b"x" * 50 + b"y" * 5000)[:4096]
    assert splitter.offer() is None  # once a line
    assert splitter.feed(b"z\nb\n") == [b"{" + b"x" * 50 + b"y" * 5000 + b"z", b"b"]
    assert splitter.feed(b"c" * 200) == []
    assert splitter.offer() is not None  # the next line is offered in its turn


def test_streamed_line_comes_out_in_parts_in_place_with_its_tail_and_no_size_limit() -> None:
    """A streamed line's pieces come between the lines around it; the last carries the line's tail."""
    line = b'{"result":{"text":"' + bytes(range(48, 58)) * 2000 + b'"},"jsonrpc":"2.0","id":7}'
    chunks = [b"first\n" + line[:1000], line[1000:9000], line[9000:] + b"\nnext\n"]
    out = stream_all(chunks, stream_after=500, limit=5000)  # the line is four times the limit
    assert out[0] == b"first" and out[-1] == b"next"
    parts = [part for part in out[1:-1] if isinstance(part, LinePart)]
    assert len(parts) == len(out) - 2
    assert b"".join(part.data for part in parts) == line
    assert [part.last for part in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].tail == line[-4096:]


def test_streamed_line_cut_by_end_of_file_yields_nothing_more() -> None:
    """At end of file an open streamed line is its streamer's to end; the splitter starts afresh."""
    splitter = LineSplitter(1 << 20, stream_after=10)
    splitter.feed(b"x" * 20)
    assert splitter.offer() == b"x" * 20
    assert splitter.stream() == [b"x" * 20]
    (part,) = splitter.feed(b"y" * 5)
    assert isinstance(part, LinePart) and (part.data, part.last) == (b"y" * 5, False)
    assert splitter.end() == []
    assert splitter.feed(b"new\n") == [b"new"]


def test_line_not_streamed_keeps_the_size_limit() -> None:
    """Offered and not taken, a line over the limit is skipped and reported as before."""
    splitter = LineSplitter(100, stream_after=10)
    splitter.feed(b'{"id":1,' + b"x" * 50)
    assert splitter.offer() is not None
    (too_long,) = splitter.feed(b"y" * 300 + b"\n")
    assert isinstance(too_long, LineTooLong) and too_long.size == 358


def test_lines_written_while_a_line_streams_come_after_it_in_order() -> None:
    """Nothing lands inside a streamed line: other lines wait for its newline, then go in order."""
    r, w = os.pipe()
    loop = EventLoop()
    out = OutStream(loop, w)
    out.write_line(b"before")
    out.begin_stream()
    parts = [bytes([65 + i]) * 100_000 for i in range(4)]  # more than the pipe holds: parts queue
    for i, part in enumerate(parts):
        assert out.write_part(part)
        assert out.write_line(b"held %d" % i)
    assert out.queued > 0
    assert out.end_stream()
    out.write_line(b"after")
    expected = b"before\n" + b"".join(parts) + b"\nheld 0\nheld 1\nheld 2\nheld 3\nafter\n"
    assert drain(loop, out, r) == expected


def test_close_ends_an_open_streamed_line_first() -> None:
    """Closing in the middle of a streamed line ends it, so what waited behind it is written too."""
    r, w = os.pipe()
    loop = EventLoop()
    out = OutStream(loop, w)
    out.begin_stream()
    out.write_part(b'{"result":')
    out.write_line(b"held")
    assert drain(loop, out, r) == b'{"result":\nheld\n'


def test_a_regular_file_is_read_although_epoll_refuses_it(tmp_path: Path) -> None:
    """epoll refuses regular files (EPERM); the loop serves them as always ready instead of failing."""
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b"one\ntwo\n")
    loop = EventLoop()
    got: list[bytes] = []
    with source.open("rb") as f:
        fd = f.fileno()

        def read() -> None:
            chunk = os.read(fd, 4)
            got.append(chunk)
            if not chunk:
                loop.remove_reader(fd)
                loop.stop()

        loop.add_reader(fd, read)
        loop.call_later(5.0, loop.stop)  # a bound, should the end never be read
        loop.run()
    assert b"".join(got) == b"one\ntwo\n" and got[-1] == b""


@pytest.mark.parametrize("stdin", ["devnull", "file"])
def test_the_shim_takes_stdin_from_a_file_or_dev_null(tmp_path: Path, stdin: str) -> None:
    """``mcp-action-firewall -- server < requests.jsonl`` (or ``</dev/null``) relays and exits 0,
    with no traceback: epoll cannot watch such a descriptor."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
    path = os.devnull if stdin == "devnull" else str(source)
    env = {**os.environ, "HOME": str(tmp_path)}
    with open(path, "rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "shim", "--no-autostart", "--", "cat"],
            stdin=f, capture_output=True, env=env, timeout=30, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    if stdin == "file":  # `cat` echoes the ping back, as the agent's stdout sees it
        assert proc.stdout.splitlines()[0] == source.read_bytes().strip()


def test_a_hang_up_wakes_the_reader_and_an_error_the_writer() -> None:
    """The loop polls epoll itself: a pipe whose writer has gone (a hang-up, no data) still wakes
    its reader, which reads the end of file; a pipe whose reader has gone (an error) wakes its
    writer, whose write then fails; a reader removed and added again is watched again."""
    loop = EventLoop()
    seen: list[str] = []
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.set_blocking(w2, False)

    def readable() -> None:
        seen.append(f"read {os.read(r1, 10)!r}")
        loop.remove_reader(r1)
        if len(seen) == 1:  # watched again: the hang-up is still there
            loop.add_reader(r1, readable)

    def writable() -> None:
        try:
            os.write(w2, b"x")
            seen.append("wrote")
        except BrokenPipeError:
            seen.append("broken")
        loop.remove_writer(w2)

    try:
        os.write(w1, b"hi")
        os.close(w1)
        os.close(r2)
        loop.add_reader(r1, readable)
        loop.add_writer(w2, writable)
        loop.call_later(0.2, loop.stop)
        loop.run()
    finally:
        os.close(r1)
        os.close(w2)
    assert sorted(seen) == ["broken", "read b''", "read b'hi'"]
