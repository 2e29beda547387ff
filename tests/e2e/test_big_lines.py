"""Big lines from the server, through the real shim: relayed as they arrive, or whole where it must see them.

The server is ``tests/fixtures/big_server.py``, which writes its big answers in 64 KiB pieces, its id
first or last. ``RawAgent`` reads the shim's stdout as raw bytes, so a test can see a line that is
still arriving, and read as slowly as it likes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command, write_config
from fixtures.big_server import PHISH, answer_line, blob_result, tools
from helpers.mcp_agent import FIXTURES
from helpers.wire import DEADLINE, Peer, call, jline, reap, request

BIG_SERVER = [sys.executable, str(FIXTURES / "big_server.py")]
GONE = -32001
ALLOW_ALL = {"global": {"allow_prefixes": [], "block_keywords": [], "default_action": "allow"}}
PAUSE_DELETES = {"global": {"allow_prefixes": [], "block_keywords": ["delete"], "default_action": "allow"}}


def big_shim(tmp_path: Path, policy: dict[str, Any]) -> list[str]:
    """The shim around the big-line server, with ``policy``."""
    return shim_command(BIG_SERVER, config=write_config(tmp_path / "policy.json", policy))


def drain(peer: Peer) -> list[bytes]:
    """Every line until the shim closes its stdout."""
    out = []
    while True:
        try:
            out.append(peer.recv_line())
        except EOFError:
            return out


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` of a live process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


class RawAgent:
    """The agent's end of the shim's pipes, read as raw bytes, ``read_size`` at a time, ``pause`` apart."""

    def __init__(
        self, command: list[str], env: dict[str, str], read_size: int = 1 << 20, pause: float = 0
    ) -> None:
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.data = bytearray()
        self.newlines = 0
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(read_size, pause), daemon=True)
        self._reader.start()

    def _read(self, read_size: int, pause: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, read_size):
            with self._changed:
                self.data += chunk
                self.newlines += chunk.count(b"\n")
                self._changed.notify_all()
            time.sleep(pause)
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def send(self, message: dict[str, Any]) -> None:
        """Write one message and its newline."""
        self.send_raw(jline(message) + b"\n")

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (blocks while the shim is not reading)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the shim was killed while this waited
            pass

    def wait(self, *, size: int = 0, lines: int = 0, deadline: float = DEADLINE) -> bytes:
        """Everything received once there are ``size`` bytes and ``lines`` newlines (fails at end of file)."""
        with self._changed:
            self._changed.wait_for(
                lambda: (len(self.data) >= size and self.newlines >= lines) or self._eof, deadline
            )
            if len(self.data) < size or self.newlines < lines:
                raise AssertionError(f"got {len(self.data)} bytes, {self.newlines} lines, eof={self._eof}")
            return bytes(self.data)

    def __enter__(self) -> RawAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        reap(self.proc, self._reader)


@pytest.mark.parametrize("id_last", [False, True], ids=["id_first", "id_last"])
def test_ten_megabyte_result_arrives_byte_identical(id_last: bool, daemon: Daemon, tmp_path: Path) -> None:
    """A 10 MB answer, its id first (Python SDKs) or last (JavaScript SDKs), reaches the agent as written,
    and is accounted for: no 'server exited' error for it when the server goes."""
    size = 10_000_000
    with Peer(big_shim(tmp_path, ALLOW_ALL), daemon.env) as peer:
        peer.send(call(1, "blob", {"size": size}, _meta={"id_last": id_last}))
        assert peer.recv_line() == answer_line(1, blob_result(size), id_last) + b"\n"
        assert peer.ask(request(2, "ping"))["result"] == {}
        assert peer.close() == 0
    assert len(peer.raw) == 2  # and nothing after the two answers


@pytest.mark.parametrize("id_last", [False, True], ids=["id_first", "id_last"])
def test_big_tools_list_still_gains_firewall_confirm(id_last: bool, daemon: Daemon, tmp_path: Path) -> None:
    """A tools/list page far over the streaming threshold is still read whole and gets firewall_confirm."""
    with Peer(big_shim(tmp_path, ALLOW_ALL), daemon.env) as peer:
        listed = peer.ask(request(1, "tools/list", {"_meta": {"id_last": id_last}}))
        peer.close()
    names = [t["name"] for t in listed["result"]["tools"]]
    assert names == [t["name"] for t in tools()] + ["firewall_confirm"]
    assert listed["result"]["tools"][0] == tools()[0]  # the 300 KB description, untouched


@pytest.mark.parametrize("id_last", [False, True], ids=["id_first", "id_last"])
def test_approved_calls_big_answer_is_read_and_audited(id_last: bool, daemon: Daemon, tmp_path: Path) -> None:
    """The answer to an approved call is read whole (never streamed), relayed as written, and its
    outcome is in the audit log."""
    size = 2_000_000
    with Peer(big_shim(tmp_path, PAUSE_DELETES), daemon.env) as peer:
        paused = peer.ask(call(1, "delete_blob", {"size": size, "id_last": id_last}))
        action_id = json.loads(paused["result"]["content"][0]["text"])["action_id"]
        (code,) = [a["code"] for a in daemon.pending() if a["action_id"] == action_id]
        peer.send(call(2, "firewall_confirm", {"otp": code}))
        assert peer.recv_line() == answer_line(2, blob_result(size), id_last) + b"\n"
        peer.close()
    deadline = time.monotonic() + DEADLINE

    def outcomes() -> list[str]:
        rows = daemon.audit()
        return [r["decision"] for r in rows if r["action_id"] == action_id and r["event"] == "outcome"]

    # Newest first: "sent" before the call went out, "ok" once its answer came back.
    while outcomes() != ["ok", "sent"]:
        assert time.monotonic() < deadline, "no outcome in the audit log"
        time.sleep(0.1)  # the outcome is sent before the answer; the daemon commits it on its own time


def test_answer_written_while_a_line_streams_comes_after_it(daemon: Daemon, tmp_path: Path) -> None:
    """The shim's own answer (a paused call) written while a big answer is half relayed waits for its end:
    both lines parse, in that order."""
    size = 2_000_000
    with RawAgent(big_shim(tmp_path, PAUSE_DELETES), daemon.env) as agent:
        agent.send(call(1, "stall_blob", {"size": size}))
        agent.wait(size=size // 4)  # half the answer is out, and the server holds the rest back
        agent.send(call(2, "delete_blob", {"size": 10}))  # the shim answers: paused
        # The daemon answers in order, so this reaches the server after the pause was answered; the
        # server then ends the first line, and answers this one.
        agent.send(call(3, "blob", {"size": 10}))
        data = agent.wait(lines=3)
    first, paused, third, rest = data.split(b"\n")
    assert first == answer_line(1, blob_result(size))
    assert json.loads(paused)["id"] == 2
    assert "PAUSED_FOR_APPROVAL" in json.loads(paused)["result"]["content"][0]["text"]
    assert third == answer_line(3, blob_result(10))
    assert rest == b""


@pytest.mark.parametrize("orphan", [False, True], ids=["pipe_closed", "pipe_held_by_a_child"])
def test_server_dying_mid_line_ends_it_and_answers_the_call(
    orphan: bool, daemon: Daemon, tmp_path: Path
) -> None:
    """A server that exits half-way through a big answer: the agent gets the half (less its last
    byte, held back until a line ends), ended by a newline, then an error under the call's id (it
    could not parse the half). Also when a child of the server keeps the pipe open, so that the
    shim gives up on it instead of seeing its end."""
    size = 2_000_000
    with Peer(big_shim(tmp_path, ALLOW_ALL), daemon.env) as peer:
        peer.send(call(1, "die_mid_line", {"size": size, "orphan": orphan}))
        rest = drain(peer)
        code = peer.close()
    line = answer_line(1, blob_result(size))
    assert len(rest) == 2, rest[1:]
    assert rest[0] == line[: len(line) // 2 - 1] + b"\n"
    error = json.loads(rest[1])
    assert (error["id"], error["error"]["code"]) == (1, GONE)
    assert code == 3


def test_slow_agent_does_not_grow_the_shims_memory(daemon: Daemon, tmp_path: Path) -> None:
    """A 40 MB answer to an agent that reads 64 KiB at a time: the shim holds a bounded part of it."""
    size = 40_000_000
    with RawAgent(big_shim(tmp_path, ALLOW_ALL), daemon.env, read_size=1 << 16, pause=0.001) as agent:
        agent.send(call(1, "blob", {"size": 10}))
        agent.wait(lines=1)
        before = peak_rss_kib(agent.proc.pid)
        agent.send(call(2, "blob", {"size": size}))
        data = agent.wait(lines=2, deadline=120)
        after = peak_rss_kib(agent.proc.pid)
    assert data.split(b"\n")[1] == answer_line(2, blob_result(size))
    # Assembled, or queued for the agent whole, the answer alone would be 47 MB; streamed, the shim
    # holds its high-water mark and a read or two of it.
    assert after - before < 12 * 1024, f"peak RSS grew by {(after - before) // 1024} MiB"


def test_an_answer_racing_a_tools_list_cannot_pass_as_its_answer(daemon: Daemon, tmp_path: Path) -> None:
    """A server holds a big answer open, then ends it as the answer to a tools/list the agent sent
    meanwhile (a guessed id), listing a firewall_confirm of its own. The shim has relayed most of the
    line already; it leaves its last byte out, so no agent can read it, and the real listing follows."""
    with RawAgent(big_shim(tmp_path, ALLOW_ALL), daemon.env) as agent:
        agent.send(call(1, "hostile_list", {}))
        agent.wait(size=150_000)  # most of the line is out
        agent.send(request(7, "tools/list"))
        data = agent.wait(lines=3)
    hostile, answer, listing, rest = data.split(b"\n")
    assert rest == b""
    assert PHISH.encode() in hostile
    with pytest.raises(ValueError):
        json.loads(hostile)
    assert json.loads(answer)["id"] == 1
    listed = json.loads(listing)
    assert listed["id"] == 7
    (confirm,) = [t for t in listed["result"]["tools"] if t["name"] == "firewall_confirm"]
    assert confirm["description"] != PHISH


def test_the_shims_answers_held_behind_a_stalled_line_stay_bounded(daemon: Daemon, tmp_path: Path) -> None:
    """While a server stalls in the middle of a big answer, the shim's own answers wait behind it; past
    a bound the shim stops reading the agent (which then blocks), instead of holding them all."""
    with RawAgent(big_shim(tmp_path, ALLOW_ALL), daemon.env) as agent:
        agent.send(call(1, "stall_blob", {"size": 2_000_000}))
        agent.wait(size=500_000)
        before = peak_rss_kib(agent.proc.pid)
        refused = jline({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": 5}}) + b"\n"
        sent = threading.Event()
        writer = threading.Thread(target=lambda: (agent.send_raw(refused * 100_000), sent.set()), daemon=True)
        writer.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not sent.is_set():
            time.sleep(0.1)
        grown = peak_rss_kib(agent.proc.pid) - before
        blocked = not sent.is_set()  # (killing the shim on the way out unblocks the writer)
    assert blocked, "the shim read 100,000 requests it could not answer yet"
    assert grown < 12 * 1024, f"shim peak RSS grew {grown} KiB"
