"""Servers that misbehave behind the shim: crash, hang, garbage, floods. The agent is never left waiting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import Daemon, shim_command
from helpers.fidelity import scripted_command
from helpers.wire import Peer, call, initialize, request

GONE = -32001


def drain(peer: Peer) -> list[dict[str, object]]:
    """Every message until the shim closes its stdout."""
    out = []
    while True:
        try:
            out.append(peer.recv())
        except EOFError:
            return out


def test_crash_answers_everything_in_flight_and_exits_with_its_status(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """A server that dies mid-call: each request in flight gets an error; the shim exits as the server did."""
    command = shim_command(scripted_command(tmp_path / "rec", tmp_path / "fx"), config=permissive)
    with Peer(command, fdaemon.env) as peer:
        peer.ask(initialize(0))
        peer.send(call(1, "hang", {}))
        peer.send(request(2, "tools/list"))
        peer.send(call(3, "crash", {}))
        rest = drain(peer)
        code = peer.close()
    errors = {m["id"]: m["error"]["code"] for m in rest if "error" in m}
    assert errors == {1: GONE, 3: GONE} or errors == {1: GONE, 2: GONE, 3: GONE}
    assert code == 3


def test_garbage_on_stdout_is_relayed_and_serving_goes_on(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Non-JSON lines from the server reach the agent as they would directly; the call is still answered."""
    outs = []
    for way in ("direct", "shim"):
        target = scripted_command(tmp_path / f"{way}.rec", tmp_path / f"{way}.fx")
        command = target if way == "direct" else shim_command(target, config=permissive)
        with Peer(command, fdaemon.env) as peer:
            peer.ask(initialize(0))
            peer.send(call(1, "garbage", {}))
            while b"after garbage" not in peer.recv_line():
                pass
            assert peer.ask(request(2, "ping"))["result"] == {}
            peer.close()
            outs.append(peer.raw)
    assert outs[0] == outs[1]
    assert b"this is not json\n" in outs[1]


def test_hung_call_does_not_hold_the_shim_when_the_agent_leaves(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """A call the server never answers: other requests still flow, and closing stdin ends the shim cleanly."""
    command = shim_command(scripted_command(tmp_path / "rec", tmp_path / "fx"), config=permissive)
    with Peer(command, fdaemon.env) as peer:
        peer.ask(initialize(0))
        peer.send(call(1, "hang", {}))
        assert peer.ask(call(2, "echo", {}))["result"]["isError"] is False
        assert peer.close() == 0


def test_server_that_exits_at_once(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """A server that exits before reading anything: an error or end of file for the agent, never a hang."""
    command = shim_command([sys.executable, "-c", "import sys; sys.exit(4)"], config=permissive)
    with Peer(command, fdaemon.env) as peer:
        try:
            peer.send(initialize(0))
        except BrokenPipeError:
            pass
        rest = drain(peer)
        code = peer.close()
    assert all(m.get("error", {}).get("code") == GONE for m in rest)  # type: ignore[union-attr]
    assert code == 4


def test_huge_stderr_lines_pass_and_serving_goes_on(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """A server that writes a 20 MB stderr line without a newline: it passes through; calls still work."""
    server = scripted_command(tmp_path / "rec", tmp_path / "fx")
    noisy = (
        "import os, sys; sys.stderr.write('e' * 20_000_000); sys.stderr.flush(); "
        f"os.execv(sys.executable, {server!r})"
    )
    stderr = tmp_path / "stderr"
    with Peer(
        shim_command([sys.executable, "-c", noisy], config=permissive), fdaemon.env, stderr=stderr
    ) as peer:
        peer.ask(initialize(0))
        echoed = peer.ask(call(1, "echo", {"a": 1}))["result"]["content"][0]["text"]
        assert json.loads(echoed)["arguments"] == {"a": 1}
        peer.close()
    assert stderr.stat().st_size >= 20_000_000


def test_huge_invalid_line_from_the_agent_is_answered_and_logged_briefly(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """A 20 MB line that is not JSON gets a parse error under its id; the shim's log of it stays short."""
    stderr = tmp_path / "stderr"
    command = shim_command(scripted_command(tmp_path / "rec", tmp_path / "fx"), config=permissive)
    with Peer(command, fdaemon.env, stderr=stderr) as peer:
        peer.send(
            b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"a":"'
            + b"x" * 20_000_000
        )
        error = peer.recv()
        assert (error["id"], error["error"]["code"]) == (9, -32700)
        assert peer.ask(initialize(0))["result"]["protocolVersion"]
        peer.close()
    assert stderr.stat().st_size < 10_000
