"""The console in a real terminal: ``firewall-console`` under tmux, read back with ``capture-pane``.

This is the one test that sees what a person sees: the real entry point, a real pty, real key
presses. A private tmux server (``-L``) keeps it away from any tmux the developer runs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import Daemon, fixture_shim
from helpers.mcp_agent import connect, tool_text
from helpers.tmux import Tmux, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


async def test_console_under_tmux(daemon: Daemon, tmux: Tmux, tmp_path: Path) -> None:
    """The code and tool of a paused call appear on the terminal; `d` denies it; `q` quits cleanly."""
    env = {**daemon.env, "COLORTERM": "truecolor"}
    tmux.start([sys.executable, "-m", "console", "--socket", daemon.socket], env)
    await wait_for(
        tmux, lambda s: "connected to" in s and "Nothing is waiting" in s, "the connected empty state"
    )

    async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
        paused = json.loads(tool_text(await agent.call_tool("delete_user", {"id": 77})))
        (action,) = daemon.pending()
        assert action["action_id"] == paused["action_id"]
        screen = await wait_for(
            tmux, lambda s: "delete_user" in s and f"Code {action['code']}" in s, "the tool and its code"
        )
        assert "approve delete_user" in screen
        assert '"id": 77' in screen

        tmux.keys("d")
        screen = await wait_for(tmux, lambda s: "Nothing is waiting" in s, "the action leave the list")
        assert action["code"] not in screen
        denied = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert denied.is_error and "denied" in tool_text(denied)

    tmux.keys("q")
    await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the console exit")
    assert tmux.exit_status() == "0"
    assert "Traceback" not in tmux.screen(history=True)


async def test_console_under_tmux_without_daemon(home: Path, tmux: Tmux) -> None:
    """No daemon: the terminal shows why and keeps retrying; no traceback, and `q` still quits."""
    socket = Daemon(home).socket
    env = {**Daemon(home).env, "COLORTERM": "truecolor"}
    tmux.start([sys.executable, "-m", "console", "--socket", socket], env)
    screen = await wait_for(tmux, lambda s: "not reachable" in s and "attempt 2" in s, "the retrying state")
    assert "Traceback" not in screen
    tmux.keys("q")
    await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the console exit")
    assert tmux.exit_status() == "0"
    assert "Traceback" not in tmux.screen(history=True)
