"""Guessing codes is bounded per user, not per chat: opening more chats does not buy more guesses,
and restarting the daemon does not reset the count."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

from conftest import Daemon, connected_sessions, effects_of, fixture_shim, wait_until
from helpers.mcp_agent import connect, tool_text

LIMIT = 4


def wrong(code: str) -> str:
    """A code that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def test_wrong_codes_are_counted_across_chats(daemon: Daemon, tmp_path: Path) -> None:
    daemon.stop()
    daemon.env["FIREWALLD_MAX_FAILED_CHECKS_PER_HOUR"] = str(LIMIT)
    daemon.start()
    fx = [tmp_path / f"fx{i}" for i in range(3)]
    async with AsyncExitStack() as stack:
        agents = [
            await stack.enter_async_context(connect(fixture_shim(f), mode="legacy", env=daemon.env))
            for f in fx
        ]
        ids = []
        for agent in agents:
            paused = await agent.call_tool("delete_user", {"id": 1})
            ids.append(json.loads(tool_text(paused))["action_id"])
        codes = {a["action_id"]: a["code"] for a in daemon.pending()}
        # Two chats guess twice each: under the per-chat limit (5 a minute), at the limit for the user.
        for agent, action_id in zip(agents[:2], ids[:2], strict=True):
            for _ in range(2):
                guess = await agent.call_tool("firewall_confirm", {"otp": wrong(codes[action_id])})
                assert guess.is_error and "does not match" in tool_text(guess)
        # The third chat has the right code, and is still refused: no code is checked for now.
        right = await agents[2].call_tool("firewall_confirm", {"otp": codes[ids[2]]})
        assert right.is_error and "across every chat" in tool_text(right), tool_text(right)
        assert all(effects_of(f) == [] for f in fx)

        # A restart gives every action a new code, and remembers the guesses of the last hour.
        daemon.stop()
        daemon.start()
        wait_until(lambda: len(connected_sessions(daemon)) == 3, what="three shims to reconnect")
        codes = {a["action_id"]: a["code"] for a in daemon.pending()}
        right = await agents[2].call_tool("firewall_confirm", {"otp": codes[ids[2]]})
        assert right.is_error and "across every chat" in tool_text(right), tool_text(right)
        assert all(effects_of(f) == [] for f in fx)
        # The human can still act from the console.
        denied = daemon.console("deny", ids[2])
        assert denied.returncode == 0
        assert ids[2] not in {a["action_id"] for a in daemon.pending()}
    events = [r["event"] for r in daemon.audit()]
    assert events.count("confirm_failed") == LIMIT  # the checks made
    assert events.count("confirm_throttled") == 2  # the codes not checked, for the human to see
