"""Grants in a real terminal: `g`, scope 2 and Enter on Approve under tmux; the Grants tab; `x` revokes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import Daemon, effects_of, fixture_shim
from helpers.mcp_agent import connect, tool_text
from helpers.tmux import Tmux, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


async def test_grant_and_revoke_under_tmux(daemon: Daemon, tmux: Tmux, tmp_path: Path) -> None:
    env = {**daemon.env, "COLORTERM": "truecolor"}
    tmux.start([sys.executable, "-m", "console", "--socket", daemon.socket], env)
    await wait_for(tmux, lambda s: "connected to" in s, "the console connected")
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode="legacy", env=daemon.env) as agent:
        paused = json.loads(tool_text(await agent.call_tool("delete_user", {"id": 1})))
        await wait_for(tmux, lambda s: "delete_user" in s and "Code" in s, "the paused call")
        tmux.keys("g")
        await wait_for(tmux, lambda s: "This tool in this chat" in s, "the grant choice")
        assert "Approve delete_user" in tmux.screen()
        tmux.keys("2", "y")
        await wait_for(tmux, lambda s: "granted" in s, "the grant's confirmation")
        grants = json.loads(daemon.console("grants", "--json").stdout)
        assert [g["action_id"] for g in grants] == [paused["action_id"]]
        assert tool_text(await agent.call_tool("delete_user", {"id": 2})) == "deleted user 2"
        tmux.keys("G")
        await wait_for(tmux, lambda s: grants[0]["grant_id"] in s, "the grant in the Grants tab")
        tmux.keys("x")
        await wait_for(tmux, lambda s: "Revoke G-" in s, "the revoke question")
        tmux.keys("y")
        await wait_for(tmux, lambda s: "No grants." in s, "the grant gone")
        again = await agent.call_tool("delete_user", {"id": 3})
        assert "PAUSED_FOR_APPROVAL" in tool_text(again)
    tmux.keys("q")
    await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the console exit")
    assert tmux.exit_status() == "0"
    assert "Traceback" not in tmux.screen(history=True)
    assert [e["id"] for e in effects_of(effects)] == [2]
