"""`a` in the console approves a held call: the agent's own request gets the real result."""

from __future__ import annotations

from pathlib import Path

import anyio
from test_console.test_console_live import SIZE, until

from conftest import Daemon, effects_of, fixture_shim
from console.app import build_app
from console.pending import ActionList
from helpers.mcp_agent import connect, tool_text


async def test_a_approves_the_held_call_and_the_agent_gets_the_real_result(
    daemon: Daemon, tmp_path: Path
) -> None:
    """The shim holds the paused call while a console is open; `a` on it runs the frozen call once,
    and the agent's original request (no code, no retry) gets the server's answer."""
    app = build_app(daemon.socket)
    answers: list[str] = []
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.connected)
        shim = fixture_shim(tmp_path / "fx", extra=("--hold", "20"))
        async with connect(shim, mode="legacy", env=daemon.env) as agent:

            async def call() -> None:
                answers.append(tool_text(await agent.call_tool("delete_user", {"id": 7})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                listing = app.query_one(ActionList)
                await until(
                    pilot, lambda: listing.selected is not None and listing.selected.tool == "delete_user"
                )
                assert effects_of(tmp_path / "fx") == []  # held, not run
                await pilot.press("a")
                with anyio.fail_after(15):
                    while not answers:
                        await pilot.pause(0.05)
    assert answers == ["deleted user 7"]
    assert [e["id"] for e in effects_of(tmp_path / "fx")] == [7]
    assert daemon.pending() == []
