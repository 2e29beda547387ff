"""Local denial of service: connections that never say hello, huge unfinished frames, no file
descriptors left and a failing database cost firewalld neither its life nor its next shim.

Each test attacks a real daemon over its real socket and then asks a real shim (around the fixture
server) for an allowed call: the answer must be the server's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Daemon, fixture_shim, wait_for_socket
from daemon import protocol as p
from helpers.mcp_agent import connect, tool_text

MiB = 1024 * 1024


def raw_connection(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(daemon.socket)
    return sock


def said_hello(daemon: Daemon, role: str) -> socket.socket:
    """A raw connection that has said hello as ``role`` and been welcomed."""
    sock = raw_connection(daemon)
    hello = p.Hello(role=role, target=["attacker"], cwd="/", pid=os.getpid())
    sock.sendall(p.encode(hello))
    decoder = p.FrameDecoder()
    messages: list[p.Message] = []
    while not messages:
        data = sock.recv(65536)
        assert data, "the daemon closed a connection that said hello"
        messages = decoder.feed(data)
    assert isinstance(messages[0], p.Welcome)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send; False if the daemon hung up first (which is what it should do to an attacker)."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """A readiness wait (the deadline fails a hang; nothing is asserted about time)."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def logged_or_dead(daemon: Daemon, text: str) -> Callable[[], bool]:
    """A check for :func:`wait_until`: the daemon has logged ``text``, or has exited."""
    proc = daemon.proc
    assert proc is not None
    return lambda: text in daemon.log_text() or proc.poll() is not None


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


async def allowed_call_is_answered(daemon: Daemon, tmp_path: Path) -> None:
    """A new shim's allowed call is decided and reaches the fixture server."""
    async with connect(fixture_shim(tmp_path / "fx"), mode="legacy", env=daemon.env) as agent:
        result = await agent.call_tool("read_note", {"name": "groceries"})
    assert not result.is_error, tool_text(result)
    assert tool_text(result) == "note:groceries"


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def budget_daemon(home: Path) -> Iterator[Daemon]:
    """A daemon that may hold 32 MiB of unfinished frames in all."""
    d = Daemon(home)
    d.env["FIREWALLD_MAX_BUFFERED_BYTES"] = str(32 * MiB)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None:
            d.stop()


async def test_silent_connections_and_huge_unfinished_frames_cost_neither_the_next_shim_nor_memory(
    budget_daemon: Daemon, tmp_path: Path
) -> None:
    """300 connections that never say hello, one that announces a 90 MiB frame before its hello,
    and six (three shims, three consoles) that say hello and then send 24 MiB of a 90 MiB frame
    and stop: a new shim is still answered, and the daemon's peak memory stays within its idle
    size plus the 32 MiB budget plus 48 MiB for everything else (the interpreter's own growth,
    a few hundred connections and one real session take a few MiB). Before the limits the six
    frames alone held 144 MiB."""
    daemon = budget_daemon
    assert daemon.proc is not None
    idle_kib = memory_kib(daemon.proc.pid, "VmHWM")
    with closing_all([]) as socks:
        socks.extend(raw_connection(daemon) for _ in range(300))
        early = raw_connection(daemon)
        socks.append(early)
        send_quietly(early, struct.pack(">I", 90 * MiB) + b"\x00" * 1000)
        chunk = b"\x00" * MiB
        for role in (p.ROLE_SHIM, p.ROLE_CONSOLE) * 3:
            sock = said_hello(daemon, role)
            socks.append(sock)
            if send_quietly(sock, struct.pack(">I", 90 * MiB)):
                for _ in range(24):
                    if not send_quietly(sock, chunk):
                        break
        await allowed_call_is_answered(daemon, tmp_path)
        peak_kib = memory_kib(daemon.proc.pid, "VmHWM")
        assert daemon.proc.poll() is None
    assert (peak_kib - idle_kib) < (32 + 48) * 1024, f"peak grew by {(peak_kib - idle_kib) // 1024} MiB"


async def test_a_frame_that_stalls_is_dropped_with_its_connection(home: Path, tmp_path: Path) -> None:
    """A console that says hello and then trickles a frame (a byte at a time, never finishing)
    is hung up on once the frame deadline passes; a shim is served meanwhile."""
    daemon = Daemon(home)
    daemon.env["FIREWALLD_FRAME_TIMEOUT"] = "1"
    daemon.start()
    try:
        sock = said_hello(daemon, p.ROLE_CONSOLE)
        closed = threading.Event()

        def trickle() -> None:
            if send_quietly(sock, struct.pack(">I", 1000)):
                for _ in range(600):  # a byte every 50 ms: 30 s if nobody hangs up
                    if not send_quietly(sock, b"\x00"):
                        break
                    time.sleep(0.05)
            closed.set()

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        await allowed_call_is_answered(daemon, tmp_path)
        thread.join(60)
        sock.settimeout(1)
        with contextlib.suppress(OSError):
            assert sock.recv(100) == b""
        sock.close()
        assert closed.is_set()
        assert "a frame did not complete within 1 s" in daemon.log_text()
    finally:
        daemon.stop()


class LimitedDaemon(Daemon):
    """A daemon started under ``prlimit --nofile=N:N``."""

    def __init__(self, home: Path, nofile: int) -> None:
        super().__init__(home)
        self.nofile = nofile

    def start(self) -> None:
        self._stderr = open(self.home / "firewalld.stderr", "ab")  # noqa: SIM115 - closed in _reap
        self.proc = subprocess.Popen(
            ["prlimit", f"--nofile={self.nofile}:{self.nofile}", sys.executable, "-m", "daemon", "run", "-v"],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        wait_for_socket(self.socket, self.proc)


async def test_no_file_descriptors_left_costs_no_life_and_serving_resumes(home: Path, tmp_path: Path) -> None:
    """With 64 descriptors and 100 consoles connected, accept() fails with EMFILE and the
    checkpoint cannot open the database: the daemon keeps running, and once the connections
    close a new shim is served."""
    daemon = LimitedDaemon(home, 64)
    daemon.start()
    assert daemon.proc is not None
    try:
        with closing_all([]) as socks:
            for _ in range(100):
                sock = raw_connection(daemon)
                socks.append(sock)
                sock.sendall(p.encode(p.Hello(role=p.ROLE_CONSOLE, pid=os.getpid())))
            wait_until(
                logged_or_dead(daemon, "cannot accept connections"),
                "the daemon to run out of descriptors",
            )
            wait_until(
                logged_or_dead(daemon, "housekeeping: checkpoint failed"),
                "a checkpoint without descriptors",
            )
            assert daemon.proc.poll() is None, daemon.log_text()[-2000:]
        await allowed_call_is_answered(daemon, tmp_path)
        assert daemon.proc.poll() is None
        assert "accepting connections again" in daemon.log_text()
    finally:
        daemon.stop()


async def test_a_failing_database_in_housekeeping_costs_no_life(daemon: Daemon, tmp_path: Path) -> None:
    """The database file's name taken by a directory makes the second's checkpoint fail with a
    real sqlite3.OperationalError: the daemon logs it, keeps deciding, and checkpoints again once
    the file is back."""
    assert daemon.proc is not None
    db = daemon.state_dir / "firewall.db"
    moved = daemon.state_dir / "firewall.db.moved"
    db.rename(moved)
    db.mkdir()
    try:
        wait_until(
            logged_or_dead(daemon, "housekeeping: checkpoint failed"),
            "a failed checkpoint",
        )
        assert daemon.proc.poll() is None, daemon.log_text()[-2000:]
        await allowed_call_is_answered(daemon, tmp_path)
    finally:
        db.rmdir()
        moved.rename(db)
    wait_until(lambda: "housekeeping: checkpoint works again" in daemon.log_text(), "a checkpoint")
    assert daemon.proc.poll() is None
