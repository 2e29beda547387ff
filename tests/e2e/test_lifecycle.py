"""The shim's process lifecycle: start errors, stdin close, signals, and no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Daemon, fixture_shim, shim_command
from helpers.mcp_agent import fixture_command

INIT = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n'
)

# Ignores stdin EOF and SIGTERM, and leaves a grandchild in its process group: the worst target.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import time, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code])
print(child.pid, file=sys.stderr, flush=True)
sys.stdin.read()
time.sleep(600)
"""


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """True if no process (not even a zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


def start_shim(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The shim as an MCP client starts it: pipes for stdin and stdout, its own process group."""
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_closing_stdin_stops_shim_and_server(daemon: Daemon, tmp_path: Path) -> None:
    """When the client closes stdin, the server and the shim exit (status 0) and nothing is left behind."""
    proc = start_shim(fixture_shim(tmp_path / "fx"), daemon.env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INIT)
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1
    (server,) = children(proc.pid)
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    assert gone(server)
    proc.stdout.close()
    assert proc.stderr is not None
    proc.stderr.close()


def test_stubborn_server_and_its_children_are_killed(daemon: Daemon, tmp_path: Path) -> None:
    """A server that ignores EOF and SIGTERM is killed with its whole process group."""
    proc = start_shim(shim_command([sys.executable, "-c", STUBBORN]), daemon.env)
    assert proc.stdin is not None and proc.stderr is not None
    grandchild = int(proc.stderr.readline())
    (server,) = children(proc.pid)
    proc.stdin.close()
    assert proc.wait(timeout=15) == 128 + signal.SIGKILL
    assert gone(server) and gone(grandchild)
    assert proc.stdout is not None
    proc.stdout.close()
    proc.stderr.close()


def test_sigterm_is_passed_to_the_server(daemon: Daemon, tmp_path: Path) -> None:
    """SIGTERM to the shim reaches the server; the shim exits with the server's status."""
    proc = start_shim(fixture_shim(tmp_path / "fx"), daemon.env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(INIT)
    proc.stdin.flush()
    proc.stdout.readline()
    (server,) = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)
    assert code in (0, 128 + signal.SIGTERM)
    assert gone(server)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


def test_missing_server_command_is_a_clear_error(daemon: Daemon) -> None:
    """A target that does not exist: one line on stderr, exit 127, no traceback, nothing on stdout."""
    result = subprocess.run(
        shim_command(["/nonexistent/mcp-server"]), input=b"", capture_output=True, env=daemon.env, timeout=30
    )
    assert result.returncode == 127
    assert b"command not found: /nonexistent/mcp-server" in result.stderr
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], b"no server to run"),
        (["--target", "'unbalanced"], b"--target"),
        (["--config", "/nonexistent.json", "--", "true"], b"no such file"),
        (["--target", "a", "--", "b"], b"not both"),
    ],
)
def test_bad_command_lines_are_refused(argv: list[str], message: bytes, home: Path) -> None:
    """Bad shim arguments give a usage error (exit 2) that says what is wrong."""
    result = subprocess.run(
        [sys.executable, "-m", "shim", *argv], capture_output=True, env=Daemon(home).env, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_shim_starts_the_daemon_on_demand(home: Path, tmp_path: Path) -> None:
    """With no daemon running, the shim starts one (detached) and the call is judged by it."""
    d = Daemon(home)
    command = [sys.executable, "-m", "shim", "--", *fixture_command(tmp_path / "fx")]
    proc = start_shim(command, d.env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    call = b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_note",'
    call += b'"arguments":{"name":"a"}}}\n'
    proc.stdin.write(INIT + call)
    proc.stdin.flush()
    answers = {}
    while len(answers) < 2:
        msg = json.loads(proc.stdout.readline())
        answers[msg["id"]] = msg
    assert answers[2]["result"]["content"][0]["text"] == "note:a"
    proc.stdin.close()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    pid = int(Path(d.socket + ".lock").read_text())
    os.kill(pid, signal.SIGTERM)  # the detached daemon outlives the shim, by design; stop it


def test_a_server_that_answers_on_its_way_out_keeps_its_answers(daemon: Daemon, tmp_path: Path) -> None:
    """``mcp-action-firewall -- server < requests.jsonl``: stdin ends at once, the calls are still
    being judged, and the server answers only after its stdin closed and a pause. Every answer
    arrives as it would without the firewall (an SDK client gives a server 2 s to exit), the
    allowed call reaches the server, and the paused one does not."""
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        INIT
        + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
        + b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_late","arguments":{"n":1}}}\n'  # noqa: E501
        + b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_late","arguments":{}}}\n'
    )
    late = [sys.executable, str(Path(__file__).parent.parent / "fixtures" / "late_server.py"), "0.8"]
    with requests.open("rb") as stdin:
        done = subprocess.run(
            shim_command(late), stdin=stdin, capture_output=True, env=daemon.env, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    answers = {a["id"]: a for a in map(json.loads, done.stdout.splitlines())}
    assert set(answers) == {1, 2, 3}, done.stdout
    assert answers[1]["result"]["serverInfo"]["name"] == "late"
    assert answers[2]["result"]["content"][0]["text"] == 'late:read_late:{"n": 1}'
    assert "PAUSED_FOR_APPROVAL" in answers[3]["result"]["content"][0]["text"]
    assert b"late_server got read_late" in done.stderr
    assert b"late_server got delete_late" not in done.stderr  # the paused call never reached it
