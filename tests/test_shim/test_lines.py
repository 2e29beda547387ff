"""Newline framing over real pipes: any size, split on the newline byte only."""

from __future__ import annotations

import os
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from shim.lines import LineReader, LineTooLong, LineWriter


def read_all(data: bytes, max_line: int = 1 << 30) -> list[bytes | LineTooLong]:
    """Feed ``data`` through a real pipe and collect what the reader yields."""
    r, w = os.pipe()

    def feed() -> None:
        _write_big(w, data)
        os.close(w)

    t = threading.Thread(target=feed)
    t.start()
    out = list(LineReader(r, max_line).lines())
    t.join()
    os.close(r)
    return out


def _write_big(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary().map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_lines_round_trip(lines: list[bytes]) -> None:
    """Whatever bytes the lines hold (\\r, U+2028, NUL), the reader returns exactly them."""
    data = b"".join(line + b"\n" for line in lines)
    assert read_all(data) == lines


def test_last_line_without_newline_is_kept() -> None:
    """A peer that exits right after writing does not lose its last message."""
    assert read_all(b"a\nb") == [b"a", b"b"]


def test_thirty_megabyte_line() -> None:
    """Lines far above 64 KiB pass whole."""
    big = b"x" * (30 * 1024 * 1024)
    assert read_all(big + b"\nend\n") == [big, b"end"]


def test_over_long_line_is_reported_and_skipped() -> None:
    """A line over the limit is reported once; the next line is read normally."""
    out = read_all(b"y" * 200_000 + b"\nok\n", max_line=100_000)
    assert isinstance(out[0], LineTooLong)
    assert out[1:] == [b"ok"]


def test_writer_never_interleaves() -> None:
    """Many threads writing big lines at once produce whole lines only."""
    r, w = os.pipe()
    writer = LineWriter(w)
    lines = [bytes([65 + i]) * 300_000 for i in range(8)]
    threads = [threading.Thread(target=writer.write_line, args=(line,)) for line in lines]
    reader_out: list[bytes | LineTooLong] = []
    reader = threading.Thread(target=lambda: reader_out.extend(LineReader(r, 1 << 30).lines()))
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    reader.join()
    os.close(r)
    assert sorted(reader_out) == sorted(lines)  # type: ignore[type-var]
