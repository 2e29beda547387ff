"""Approve from the console while the chat waits: the agent's own call returns the real result.

The shim holds a paused call open (``--hold``) while a console is open; ``firewall-console approve``
runs it and the original request gets the server's answer, with no code and no retry. When the
hold runs out the agent is told the call is paused, and the code works as always. The official
SDK client is the agent, in both protocol eras.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import Daemon, effects_of, fixture_shim, wait_until
from console.client import ConsoleClient
from helpers.mcp_agent import MODES, connect, tool_text


@pytest.fixture
def watching(daemon: Daemon) -> Iterator[ConsoleClient]:
    """A console that is open (subscribed), as the TUI is."""
    with ConsoleClient(daemon.socket) as console:
        console.subscribe()
        yield console


def held(daemon: Daemon) -> dict[str, Any]:
    """The one pending action, once its chat holds it open."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        found[:] = [a for a in daemon.pending() if a["held_until"] > 0]
        return bool(found)

    wait_until(ready, what="a held action")
    return found[0]


@pytest.mark.parametrize("mode", MODES)
async def test_held_call_approved_in_the_console_returns_the_real_result(
    mode: str, daemon: Daemon, watching: ConsoleClient, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    command = fixture_shim(effects, extra=("--hold", "30"))
    async with connect(command, mode=mode, env=daemon.env) as agent:
        result: dict[str, Any] = {}

        async def call() -> None:
            result["r"] = await agent.call_tool("delete_user", {"id": 42}, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            action = await anyio.to_thread.run_sync(held, daemon)
            assert effects_of(effects) == [] and "r" not in result
            if mode == "legacy":  # the wait is visible to the client as progress
                await anyio.to_thread.run_sync(lambda: wait_until(lambda: bool(progress), what="progress"))
            approved = daemon.console("approve", action["action_id"])
            assert "approved" in approved.stdout
        done = result["r"]
        assert not done.is_error, tool_text(done)
        assert tool_text(done) == "deleted user 42"
        assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]
        again = daemon.console("approve", action["action_id"], check=False)
        assert again.returncode == 1 and "no pending action" in again.stderr
    rows = [r for r in daemon.audit() if r["action_id"] == action["action_id"]]
    assert [(r["event"], r["detail"]) for r in rows if r["event"] == "confirm_ok"] == [
        ("confirm_ok", "approved in the console")
    ]
    wait_until(
        lambda: (
            [
                r["decision"]
                for r in daemon.audit()
                if r["action_id"] == action["action_id"] and r["event"] == "outcome"
            ]
            == ["ok", "sent"]
        ),
        what="the outcome",
    )


async def test_hold_that_runs_out_falls_back_to_the_code(
    daemon: Daemon, watching: ConsoleClient, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects, extra=("--hold", "1")), mode="legacy", env=daemon.env) as agent:
        paused = await agent.call_tool("delete_user", {"id": 7})
        assert paused.is_error and "PAUSED_FOR_APPROVAL" in tool_text(paused)
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = daemon.pending()
        assert action["held_until"] == 0
        late = daemon.console("approve", action_id, check=False)
        assert late.returncode == 1 and "not held" in late.stderr and "code" in late.stderr
        assert effects_of(effects) == []
        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert tool_text(confirmed) == "deleted user 7"
    assert effects_of(effects) == [{"id": 7, "tool": "delete_user"}]


async def test_no_hold_without_a_console_to_approve(daemon: Daemon, tmp_path: Path) -> None:
    """Nobody is watching: holding would only make the agent wait, so it is told at once."""
    async with connect(
        fixture_shim(tmp_path / "fx", extra=("--hold", "30")), mode="legacy", env=daemon.env
    ) as agent:
        with anyio.fail_after(20):  # a hold would take 30 s
            paused = await agent.call_tool("delete_user", {"id": 1})
    assert "PAUSED_FOR_APPROVAL" in tool_text(paused)


async def test_cancelled_held_call_is_withdrawn(
    daemon: Daemon, watching: ConsoleClient, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects, extra=("--hold", "30")), mode="legacy", env=daemon.env) as agent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent.call_tool, "delete_user", {"id": 3})
            action = await anyio.to_thread.run_sync(held, daemon)
            tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the call
        await anyio.to_thread.run_sync(lambda: wait_until(lambda: daemon.pending() == [], what="withdrawal"))
        refused = daemon.console("approve", action["action_id"], check=False)
        assert refused.returncode == 1
        after = await agent.call_tool("read_note", {"name": "still-serving"})
    assert tool_text(after) == "note:still-serving"
    assert effects_of(effects) == []
    withdrawn = [r for r in daemon.audit() if r["event"] == "withdrawn"]
    assert [r["action_id"] for r in withdrawn] == [action["action_id"]]
