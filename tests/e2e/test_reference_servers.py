"""The firewall in front of reference MCP servers from the npm registry (installed by `make node`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, Daemon, shim_command
from helpers.mcp_agent import MODES, connect, tool_text

NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"

pytestmark = [pytest.mark.npm, pytest.mark.parametrize("mode", MODES)]


def filesystem_server(root: Path) -> list[str]:
    """@modelcontextprotocol/server-filesystem serving ``root``."""
    binary = NODE_BIN / "mcp-server-filesystem"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make node` (the test command does)")
    return [str(binary), str(root)]


async def test_filesystem_write_is_paused_then_runs_once(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """write_file is paused and writes nothing; after the code, exactly the frozen content is written."""
    root = tmp_path / "files"
    root.mkdir()
    (root / "hello.txt").write_text("hello")
    target = root / "out.txt"
    async with connect(shim_command(filesystem_server(root)), mode=mode, env=daemon.env) as agent:
        names = {t.name for t in (await agent.list_tools()).tools}
        assert {"read_text_file", "write_file", "firewall_confirm"} <= names
        read = await agent.call_tool("read_text_file", {"path": str(root / "hello.txt")})
        assert not read.is_error and "hello" in tool_text(read)
        listing = await agent.call_tool("list_directory", {"path": str(root)})
        assert "hello.txt" in tool_text(listing)

        paused = await agent.call_tool("write_file", {"path": str(target), "content": "frozen"})
        assert paused.is_error and "PAUSED_FOR_APPROVAL" in tool_text(paused)
        assert not target.exists()
        (action,) = daemon.pending()
        assert action["arguments"] == {"path": str(target), "content": "frozen"}

        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"], "content": "changed"})
        assert not confirmed.is_error, tool_text(confirmed)
        assert target.read_text() == "frozen"
        target.unlink()
        replay = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert replay.is_error
    assert not target.exists()
