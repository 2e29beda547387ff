"""firewalld as a service: crashes, restarts, concurrent starts and reloads, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import (
    Daemon,
    connected_sessions,
    effects_of,
    fixture_shim,
    minimal_env,
    wait_until,
    write_config,
)
from helpers.mcp_agent import connect, fixture_command, tool_text


def daemons_for(socket_path: str) -> list[int]:
    """Pids of firewalld processes serving this socket (by their lock file's owner and /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daemon" in cmdline and b"run" in cmdline and socket_path.encode() in cmdline:
            stat = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            if stat != b"Z":
                pids.append(int(entry.name))
    return pids


async def test_kill9_with_actions_pending_loses_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """After kill -9: calls fail closed while down, the shim reconnects, the action waits again with
    a new code (the old one died with the daemon's memory), and the decision made just before the
    kill is in the audit log."""
    effects = tmp_path / "fx"
    command = fixture_shim(effects, extra=("--decision-timeout", "1"))
    async with connect(command, mode="legacy", env=daemon.env) as agent:
        before = await agent.call_tool("read_note", {"name": "before-the-kill"})
        assert tool_text(before) == "note:before-the-kill"
        paused = await agent.call_tool("delete_user", {"id": 42})
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = daemon.pending()
        daemon.kill9()

        down = await agent.call_tool("read_note", {"name": "x"})
        assert down.is_error and "firewall" in tool_text(down)
        assert "read_note" in {t.name for t in (await agent.list_tools()).tools}  # the rest flows
        assert effects_of(effects) == []

        daemon.start()
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: connected_sessions(daemon), what="reconnect")
        )
        (again,) = daemon.pending()
        assert again["action_id"] == action_id and again["code"] != ""
        if again["code"] != action["code"]:  # one chance in a million that the new code is the same
            void = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
            assert void.is_error and "restarted" in tool_text(void)
            assert effects_of(effects) == []
        confirmed = await agent.call_tool("firewall_confirm", {"otp": again["code"]})
        assert not confirmed.is_error, tool_text(confirmed)
        after = await agent.call_tool("read_note", {"name": "y"})
    assert tool_text(after) == "note:y"
    assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]
    (row,) = [r for r in daemon.audit() if "before-the-kill" in (r["detail"] or "")]
    assert (row["event"], row["decision"]) == ("decision", "allow")


async def test_code_that_expired_while_down_does_not_approve(daemon: Daemon, tmp_path: Path) -> None:
    """A deadline that passes while the daemon is down is still a deadline."""
    config = write_config(tmp_path / "p.json", {"global": {"default_action": "block", "otp_ttl_seconds": 2}})
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects, config=config), mode="legacy", env=daemon.env) as agent:
        await agent.call_tool("delete_user", {"id": 1})
        (action,) = daemon.pending()
        daemon.kill9()
        await anyio.sleep(max(0.0, action["deadline"] - time.time()) + 0.2)  # let the deadline pass
        daemon.start()
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: connected_sessions(daemon), what="reconnect")
        )
        assert daemon.pending() == []  # no new code for an action past its deadline
        result = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert result.is_error
    assert effects_of(effects) == []
    expired = [r for r in daemon.audit() if r["event"] == "expired"]
    assert [r["action_id"] for r in expired] == [action["action_id"]]


def test_kill9_shim_withdraws_its_actions(daemon: Daemon, tmp_path: Path) -> None:
    """When a shim dies without a word, the daemon notices and withdraws that session's actions."""
    proc = subprocess.Popen(
        fixture_shim(tmp_path / "fx"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=daemon.env
    )
    assert proc.stdin is not None and proc.stdout is not None
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "delete_user", "arguments": {}},
    }
    proc.stdin.write(json.dumps(call).encode() + b"\n")
    proc.stdin.flush()
    assert "PAUSED_FOR_APPROVAL" in proc.stdout.readline().decode()
    (action,) = daemon.pending()
    proc.kill()
    proc.wait()
    wait_until(lambda: daemon.pending() == [], what="the action to be withdrawn")
    withdrawn = [r for r in daemon.audit() if r["event"] == "withdrawn"]
    assert withdrawn[0]["action_id"] == action["action_id"]
    assert withdrawn[0]["detail"] == "the shim exited"
    assert connected_sessions(daemon) == []
    proc.stdin.close()
    proc.stdout.close()


_INIT_AND_CALL = (
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n'
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_note","arguments":{"name":"n"}}}\n'
)


def test_ten_shims_at_once_start_one_daemon(home: Path, tmp_path: Path) -> None:
    """Ten shims started together with no daemon running end up sharing exactly one daemon."""
    d = Daemon(home)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shim", "--", *fixture_command(tmp_path / f"fx{i}")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=d.env,
        )
        for i in range(10)
    ]
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(_INIT_AND_CALL)
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            replies = {}
            while 1 not in replies:
                reply = json.loads(proc.stdout.readline())
                replies[reply["id"]] = reply
            assert replies[1]["result"]["content"][0]["text"] == "note:n"
        assert len(daemons_for(d.socket)) == 1
    finally:
        for proc in procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            proc.wait(timeout=10)
            proc.stdout.close()
        for pid in daemons_for(d.socket):
            os.kill(pid, signal.SIGTERM)


def _first_call(env: dict[str, str], tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str, float]:
    """One shim with autostart on and no daemon running: the answer to its first tools/call, its
    stderr, and the seconds that answer took."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shim", *extra, "--", *fixture_command(tmp_path / "fx")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    started = time.monotonic()
    proc.stdin.write(_INIT_AND_CALL)
    proc.stdin.flush()
    while (reply := json.loads(proc.stdout.readline()))["id"] != 1:
        pass
    took = time.monotonic() - started
    proc.stdin.close()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    return reply, err, took


def test_a_daemon_the_shim_starts_gets_longer_than_the_decision_deadline(home: Path, tmp_path: Path) -> None:
    """A call made while the daemon the shim started is still coming up waits for it, even when that
    takes longer than --decision-timeout (ten servers starting at login share the CPUs with it)."""
    d = Daemon(home)
    try:
        # A daemon takes about a second to come up; 0.05 s is over long before it does.
        reply, err, _ = _first_call(d.env, tmp_path, "--decision-timeout", "0.05")
        assert reply["result"]["content"][0]["text"] == "note:n", err
        assert len(daemons_for(d.socket)) == 1
    finally:
        for pid in daemons_for(d.socket):
            os.kill(pid, signal.SIGTERM)


def test_a_daemon_that_fails_to_start_is_not_waited_for(home: Path, tmp_path: Path) -> None:
    """When the daemon the shim started exits at once (here: its state directory cannot be made),
    the call is refused at its own deadline, not after the start allowance, and stderr says why."""
    (home / ".local").write_text("")  # where the state directory would go
    env = {**minimal_env(home), "FIREWALL_SOCKET": str(tmp_path / "firewalld.sock")}
    reply, err, took = _first_call(env, tmp_path, "--decision-timeout", "2")
    assert reply["result"]["isError"] is True
    text = reply["result"]["content"][0]["text"]
    assert "did not answer in time" in text and "did not run" in text
    assert "firewalld exited at start with status 1" in err
    assert took < 15  # the start allowance is 20 s; its own deadline is 2 s
    assert effects_of(tmp_path / "fx") == []


def test_second_daemon_refuses_and_stale_socket_is_replaced(daemon: Daemon, tmp_path: Path) -> None:
    """One daemon per socket, and per state directory: a second is refused by either lock; a
    crashed one's socket is reused."""
    second = subprocess.run(
        [sys.executable, "-m", "daemon", "run"], env=daemon.env, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 1
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    other_socket = {**daemon.env, "FIREWALL_SOCKET": str(tmp_path / "other.sock")}  # same HOME
    third = subprocess.run(
        [sys.executable, "-m", "daemon", "run"], env=other_socket, capture_output=True, text=True, timeout=30
    )
    assert third.returncode == 1
    assert "another firewalld is using" in third.stderr and "Traceback" not in third.stderr
    daemon.kill9()
    assert os.path.exists(daemon.socket)  # left behind by the crash
    daemon.start()  # waits until the new daemon accepts connections on the same path
    assert daemon.pending() == []


def test_sigterm_exits_zero_with_the_audit_log_written(daemon: Daemon, tmp_path: Path) -> None:
    """SIGTERM stops the daemon cleanly (exit 0), and what it recorded is on disk."""
    daemon.console("pending")
    assert daemon.stop() == 0
    import sqlite3

    with sqlite3.connect(daemon.state_dir / "firewall.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not os.path.exists(daemon.socket)


async def test_policy_reloads_and_a_broken_file_keeps_the_last_good(daemon: Daemon, tmp_path: Path) -> None:
    """Editing the policy takes effect without a restart; a broken edit keeps the last good policy."""
    config = tmp_path / "policy.json"
    write_config(config, {"global": {"allow_prefixes": [], "default_action": "deny"}})
    async with connect(fixture_shim(tmp_path / "fx", config=config), mode="legacy", env=daemon.env) as agent:
        assert (await agent.call_tool("read_note", {"name": "a"})).is_error
        write_config(config, {"global": {"allow_prefixes": ["read_"], "default_action": "deny"}})
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        await _eventually_allowed(agent)
        config.write_text('{"global": {"default_action": "allw"}}')
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        await anyio.to_thread.run_sync(
            lambda: wait_until(
                lambda: "did not reload" in daemon.log_text(), what="the reload error in the log"
            )
        )
        still = await agent.call_tool("read_note", {"name": "b"})
    assert tool_text(still) == "note:b"
    assert "default_action" in daemon.log_text()


async def _eventually_allowed(agent: Any) -> None:
    with anyio.fail_after(20):
        while (await agent.call_tool("read_note", {"name": "a"})).is_error:  # noqa: ASYNC110 - a reload is not an event we can await
            await anyio.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket activation is systemd's")
def test_socket_activation_serves_the_passed_socket(home: Path, tmp_path: Path) -> None:
    """Given a listening socket as fd 3 with LISTEN_FDS/LISTEN_PID, as systemd does, the daemon serves it."""
    import socket as socketlib

    d = Daemon(home)
    path = str(tmp_path / "activated.sock")
    listener = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    # LISTEN_PID must be the daemon's own pid: set it in the child, then exec (the pid survives exec).
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1';"
        "os.environ['LISTEN_PID'] = str(os.getpid());"
        "os.execv(sys.executable, [sys.executable, '-m', 'daemon', 'run', '--socket', sys.argv[2]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listener.fileno()), path],
        pass_fds=(listener.fileno(),),
        env=d.env,
        stderr=subprocess.DEVNULL,
    )
    listener.close()  # the daemon owns it now
    try:
        d.socket = path
        wait_until(lambda: d.console("pending", check=False).returncode == 0, what="the activated daemon")
        assert "0 connected session(s)" in d.console("pending").stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
