"""Tool annotations as policy input: trusted only where the config says so, exact names only."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Daemon, effects_of, fixture_shim, write_config
from helpers.mcp_agent import MODES, connect, tool_text

pytestmark = pytest.mark.parametrize("mode", MODES)


def policy(tmp_path: Path, trust: bool) -> Path:
    """No prefixes, approval by default, and a rule that allows read-only tools."""
    return write_config(
        tmp_path / "policy.json",
        {
            "global": {"allow_prefixes": [], "block_keywords": [], "default_action": "approve"},
            "servers": {
                "fx": {
                    "trust_annotations": trust,
                    "rules": [
                        {"name": "read-only", "annotations": {"readOnlyHint": True}, "action": "allow"}
                    ],
                }
            },
        },
    )


async def test_trusted_read_only_hint_allows(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """With trust, a tool the server listed as read-only is allowed; a destructive one still pauses."""
    command = fixture_shim(tmp_path / "fx", config=policy(tmp_path, True), name="fx")
    async with connect(command, mode=mode, env=daemon.env) as agent:
        await agent.list_tools()
        read = await agent.call_tool("read_note", {"name": "a"})
        delete = await agent.call_tool("delete_user", {"id": 1})
    assert tool_text(read) == "note:a"
    assert delete.is_error and "PAUSED_FOR_APPROVAL" in tool_text(delete)
    assert effects_of(tmp_path / "fx") == []


async def test_untrusted_hints_count_for_nothing(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """Without trust, the same read-only tool is treated as unannotated (destructive) and paused."""
    command = fixture_shim(tmp_path / "fx", config=policy(tmp_path, False), name="fx")
    async with connect(command, mode=mode, env=daemon.env) as agent:
        await agent.list_tools()
        read = await agent.call_tool("read_note", {"name": "a"})
    assert read.is_error and "PAUSED_FOR_APPROVAL" in tool_text(read)


async def test_unlisted_name_does_not_inherit_a_listed_tools_hints(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """A near-miss of a listed read-only tool's name is unannotated, so it is paused."""
    command = fixture_shim(tmp_path / "fx", config=policy(tmp_path, True), name="fx")
    async with connect(command, mode=mode, env=daemon.env) as agent:
        await agent.list_tools()
        result = await agent.call_tool("Read_Note", {"name": "a"})
    assert result.is_error and "PAUSED_FOR_APPROVAL" in tool_text(result)
