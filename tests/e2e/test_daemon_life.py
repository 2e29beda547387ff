"""The daemon's life from a user's side: `firewalld init`, `status`, `stop`, signals while stopping,
uninstalled files, and a misspelt `--name`, with real processes, a real socket and the MCP SDK."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from conftest import (
    ROOT,
    Daemon,
    connected_sessions,
    fixture_shim,
    wait_for_socket,
    wait_until,
    write_config,
)
from daemon.config import load_config
from helpers.mcp_agent import connect, tool_text

USER_FILE = Path(".config") / "mcp-action-firewall" / "firewall_config.json"


def firewalld(d: Daemon, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`firewalld ARGS` as the user would run it, with the daemon's HOME."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env=d.env,
        cwd=cwd or d.home,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_raw_shim(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The shim as a client starts it, with pipes we read ourselves."""
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


async def test_status_and_stop(home: Path, tmp_path: Path) -> None:
    """status: 3 when down; pid, socket, sessions, pending and the policy in use when up.
    stop: the daemon exits 0, and stop waits for that; a second stop finds nothing (3)."""
    d = Daemon(home)
    down = firewalld(d, "status")
    assert down.returncode == 3 and "firewalld is not running" in down.stdout
    assert firewalld(d, "stop").returncode == 3
    config = write_config(tmp_path / "policy.json", {"global": {}, "servers": {"stripe": {}}})
    d.start()
    assert d.proc is not None
    try:
        command = fixture_shim(tmp_path / "fx", config=config, name="stripe")
        async with connect(command, mode="auto", env=d.env) as agent:
            paused = json.loads(tool_text(await agent.call_tool("delete_user", {"id": 1})))
            assert paused["status"] == "PAUSED_FOR_APPROVAL"
            up = await anyio.to_thread.run_sync(lambda: firewalld(d, "status"))
            as_json = await anyio.to_thread.run_sync(lambda: firewalld(d, "status", "--json"))
        assert up.returncode == 0, up.stderr
        assert f"firewalld is running (pid {d.proc.pid}, version 0.4.0, up " in up.stdout
        assert f"socket:   {d.socket}" in up.stdout
        assert "sessions: 1 connected" in up.stdout
        assert "pending:  1 action(s) waiting for approval" in up.stdout
        assert f"{config}, server section 'stripe': 1 session" in up.stdout
        report = json.loads(as_json.stdout)
        assert report["running"] and report["pid"] == d.proc.pid and report["pending"] == 1
        assert report["policies"] == [
            {"path": str(config), "server": "stripe", "sessions": 1, "error": None, "warnings": []}
        ]
        stopped = firewalld(d, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert f"firewalld (pid {d.proc.pid}) is stopping; it has stopped" in stopped.stdout
        assert d.proc.wait(timeout=10) == 0
        assert "asked by a console (firewalld stop)" in d.log_text()
        assert firewalld(d, "stop").returncode == 3
    finally:
        d.stop()


def test_stop_sends_sigterm_when_the_socket_does_not_answer(home: Path) -> None:
    """With its socket file gone, stop finds the daemon by its lock and signals it."""
    d = Daemon(home)
    d.start()
    assert d.proc is not None
    try:
        os.unlink(d.socket)
        stopped = firewalld(d, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert f"sent SIGTERM to pid {d.proc.pid}" in stopped.stdout
        assert d.proc.wait(timeout=10) == 0
    finally:
        d.stop()


def test_more_signals_while_stopping_change_nothing(home: Path) -> None:
    """SIGTERM, then SIGINT and SIGTERM again and again until it has gone: exit 0, no traceback."""
    d = Daemon(home)
    d.start()
    assert d.proc is not None
    proc = d.proc
    proc.send_signal(signal.SIGTERM)
    sent = 1
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT if sent % 2 else signal.SIGTERM)
        sent += 1
        time.sleep(0.002)
    code = d.stop()
    assert sent > 2  # the later signals did reach it while it stopped
    assert code == 0
    log = d.log_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    # One stop, whichever signal Python handled first (pending ones run in signal-number order).
    assert log.count("stopping: signal ") == 1, log


def test_daemon_stops_when_its_installed_files_are_removed(home: Path, tmp_path: Path) -> None:
    """Uninstalled under it (its package folder removed), the daemon logs why and exits 0."""
    site = tmp_path / "site"
    for package in ("daemon", "shim"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    d = Daemon(home)
    log = home / "firewalld.stderr"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run"],
            env={**d.env, "PYTHONPATH": str(site)},
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            wait_for_socket(d.socket, proc)
            shutil.rmtree(site / "daemon")
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert f"the installed files are gone ({site / 'daemon' / '__init__.py'} no longer exists)" in text
    assert "Traceback" not in text


async def test_init_writes_a_starter_policy_that_the_shim_then_finds(home: Path, tmp_path: Path) -> None:
    """init writes where shims look, refuses to overwrite without --force, and a shim with no
    --config uses that file (its session names it, and an edit to it decides a call)."""
    d = Daemon(home)
    path = home / USER_FILE
    wrote = firewalld(d, "init")
    assert wrote.returncode == 0, wrote.stderr
    assert f"wrote the starter policy to {path}" in wrote.stdout
    starter = json.loads(path.read_text())
    assert starter["description"] and starter["global"]["description"]
    assert all(section["description"] for section in starter["servers"].values())
    load_config(path)  # valid as written
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    starter["global"]["rules"].insert(0, {"name": "mine", "tool": "delete_user", "action": "deny"})
    path.write_text(json.dumps(starter))
    again = firewalld(d, "init")
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr
    assert json.loads(path.read_text())["global"]["rules"][0]["name"] == "mine"  # left as it was

    explained = firewalld(d, "explain", "delete_user", cwd=tmp_path)
    assert f"policy: {path}" in explained.stdout and "decision: deny" in explained.stdout

    d.start()
    try:
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=d.env) as agent:
            denied = await agent.call_tool("delete_user", {"id": 1})
            (session,) = json.loads(d.console("pending", "--json").stdout)["sessions"]
            listing = d.console("pending").stdout
        assert denied.is_error and "mine" in tool_text(denied)
        assert session["config_path"] == str(path)
        assert f"policy: {path}" in listing
    finally:
        d.stop()

    forced = firewalld(d, "init", "--force")
    assert forced.returncode == 0
    assert json.loads(path.read_text())["global"]["rules"][0]["name"] != "mine"


def test_init_follows_xdg_config_home_and_says_what_clients_see(home: Path, tmp_path: Path) -> None:
    """With XDG_CONFIG_HOME set, init writes there and warns that MCP clients look in ~/.config."""
    d = Daemon(home)
    d.env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    wrote = firewalld(d, "init")
    assert wrote.returncode == 0, wrote.stderr
    assert (tmp_path / "xdg" / "mcp-action-firewall" / "firewall_config.json").is_file()
    assert f"their shims look in {home / USER_FILE}" in wrote.stdout


def test_a_misspelt_name_is_told_on_the_shim_the_console_and_explain(daemon: Daemon, tmp_path: Path) -> None:
    """--name strpe where the policy has 'stripe': a warning on the shim's stderr at start, on its
    session in the console (text and JSON), and in `firewalld explain`."""
    config = write_config(tmp_path / "policy.json", {"global": {}, "servers": {"stripe": {}}})
    shim = start_raw_shim(fixture_shim(tmp_path / "fx", config=config, name="strpe"), daemon.env)
    assert shim.stdin is not None and shim.stdout is not None and shim.stderr is not None
    try:
        first = shim.stderr.readline().decode()
        assert first == (
            f"mcp-action-firewall: warning: --name 'strpe' matches no server section of {config} "
            "(its sections: 'stripe'; did you mean 'stripe'?), so only the global rules apply\n"
        )
        shim.stdin.write(
            b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
            b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}\n'
        )
        shim.stdin.flush()
        assert json.loads(shim.stdout.readline())["id"] == 1
        wait_until(lambda: json.loads(daemon.console("pending", "--json").stdout)["sessions"], what="session")
        (session,) = json.loads(daemon.console("pending", "--json").stdout)["sessions"]
        listing = daemon.console("pending").stdout
    finally:
        shim.stdin.close()
        shim.wait(timeout=20)
        shim.stdout.close()
        shim.stderr.close()
    assert session["config_path"] == str(config) and session["server"] == "strpe"
    assert session["warnings"] == [
        f"--name 'strpe' matches no server section of {config} (its sections: 'stripe'; "
        "did you mean 'stripe'?), so only the global rules apply"
    ]
    assert f"      policy: {config}, server section 'strpe'" in listing
    assert "      warning: --name 'strpe' matches no server section" in listing
    explained = firewalld(daemon, "explain", "--config", str(config), "--name", "strpe", "create_charge")
    assert (
        "warning: --name 'strpe' matches no server section of the policy (its sections: 'stripe'; "
        "did you mean 'stripe'?), so only the global rules apply" in explained.stdout
    )
    right = firewalld(daemon, "explain", "--config", str(config), "--name", "stripe", "create_charge")
    assert "warning" not in right.stdout


async def test_strict_name_refuses_and_the_client_sees_it_exit(daemon: Daemon, tmp_path: Path) -> None:
    """--strict-name with a misspelt --name: exit 2 at once (stdin still open), one line on stderr,
    nothing on stdout, no server started; the SDK client gets an error, not a hang."""
    config = write_config(tmp_path / "policy.json", {"global": {}, "servers": {"stripe": {}}})
    command = fixture_shim(tmp_path / "fx", config=config, name="strpe", extra=("--strict-name",))
    shim = start_raw_shim(command, daemon.env)
    try:
        assert shim.wait(timeout=20) == 2  # stdin was never closed: it did not wait for the client
        assert shim.stdout is not None and shim.stderr is not None
        assert shim.stdout.read() == b""
        (line,) = shim.stderr.read().decode().splitlines()
        assert line.startswith("mcp-action-firewall: refusing to start (--strict-name): --name 'strpe'")
    finally:
        for pipe in (shim.stdin, shim.stdout, shim.stderr):
            if pipe is not None:
                pipe.close()
    with anyio.fail_after(30):
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever the SDK calls a dead server
            async with connect(command, mode="legacy", env=daemon.env) as agent:
                await agent.list_tools()
    assert not isinstance(raised.value, TimeoutError)
    assert not (tmp_path / "fx").exists()  # the server never ran a call


async def test_session_counters_survive_a_daemon_restart(daemon: Daemon, tmp_path: Path) -> None:
    """The console's allowed / paused / denied counts of a session are the same after a restart."""
    config = write_config(
        tmp_path / "policy.json",
        {"global": {"allow_prefixes": ["read_"], "rules": [{"tool": "transfer_funds", "action": "deny"}]}},
    )
    command = fixture_shim(tmp_path / "fx", config=config, extra=("--decision-timeout", "1"))
    async with connect(command, mode="auto", env=daemon.env) as agent:
        for name in ("a", "b"):
            assert not (await agent.call_tool("read_note", {"name": name})).is_error
        await agent.call_tool("delete_user", {"id": 1})
        await agent.call_tool("transfer_funds", {"amount": 1})
        (before,) = connected_sessions(daemon)
        assert (before["allowed"], before["paused"], before["denied"]) == (2, 1, 1)
        daemon.stop()
        daemon.start()
        await anyio.to_thread.run_sync(lambda: wait_until(lambda: connected_sessions(daemon), what="resume"))
        (after,) = connected_sessions(daemon)
        assert after["session_id"] == before["session_id"]
        assert (after["allowed"], after["paused"], after["denied"]) == (2, 1, 1)
        assert not (await agent.call_tool("read_note", {"name": "c"})).is_error
        (later,) = connected_sessions(daemon)
        assert later["allowed"] == 3
