"""The bundled policy in front of the npm reference servers, through the real shim and daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_daemon.test_default_policy import TOOLS

from conftest import ROOT, Daemon, shim_command, write_config
from daemon.config import DEFAULT_CONFIG
from helpers.mcp_agent import connect, tool_text

NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"

pytestmark = pytest.mark.npm


def command(server: str, root: Path) -> list[str]:
    binary = NODE_BIN / f"mcp-server-{server}"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make node` (the test command does)")
    return [str(binary), str(root)] if server == "filesystem" else [str(binary)]


@pytest.mark.parametrize("trust", [False, True], ids=["by-name", "trusted"])
@pytest.mark.parametrize("server", ["everything", "filesystem"])
async def test_exactly_the_writing_tools_pause(
    server: str, trust: bool, daemon: Daemon, tmp_path: Path
) -> None:
    """Every listed tool is called with no arguments: the paused ones are exactly the table's, nothing
    else waits for a human, and the listed names are the table's (so the unit table cannot drift)."""
    root = tmp_path / "files"
    root.mkdir()
    config = json.loads(DEFAULT_CONFIG.read_text())
    if trust:
        config["servers"][server] = {"trust_annotations": True}
    path = write_config(tmp_path / "policy.json", config)
    shim = shim_command(command(server, root), config=path, name=server)
    async with connect(shim, mode="auto", env=daemon.env) as agent:
        listed = [t.name for t in (await agent.list_tools()).tools if t.name != "firewall_confirm"]
        paused = set()
        for name in listed:
            result = await agent.call_tool(name, {})
            if "PAUSED_FOR_APPROVAL" in tool_text(result):
                paused.add(name)
        # While the chat is open: when it closes, the daemon withdraws the actions it left waiting.
        waiting = sorted(a["tool"] for a in daemon.pending())
    expected = {
        tool for tool, _, plain, trusted in TOOLS[server] if (trusted if trust else plain) == "approve"
    }
    assert sorted(listed) == sorted(tool for tool, *_ in TOOLS[server])
    assert paused == expected
    assert waiting == sorted(expected)
    assert list(root.iterdir()) == []
