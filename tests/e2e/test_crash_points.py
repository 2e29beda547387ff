"""kill -9 of the daemon at each point of a confirm: the call runs at most once, the agent is told the
truth, and the audit log agrees with what the server did.

The daemon dies where ``FIREWALLD_FAILPOINTS`` says (see :mod:`daemon.failpoints`): after the approval
is written but before it commits, and after the commit but before the shim hears of it. A third test
kills it (from outside) while an approved call is running on the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import Daemon, connected_sessions, effects_of, fixture_shim, wait_until, write_config
from helpers.mcp_agent import connect, tool_text

#: A policy that pauses the fixture's slow read as well, so an approved call can be caught running.
POLICY = {
    "global": {
        "default_action": "block",
        "rules": [{"name": "slow reads need approval", "tool": "get_slow", "action": "approve"}],
    }
}


async def wait_for(predicate: Any, what: str) -> None:
    await anyio.to_thread.run_sync(lambda: wait_until(predicate, what=what))


def events_of(daemon: Daemon, action_id: str) -> list[tuple[str, str | None]]:
    """The audit rows of one action, oldest first, as (event, decision)."""
    rows = [r for r in daemon.audit() if r["action_id"] == action_id]
    return [(r["event"], r["decision"]) for r in reversed(rows)]


def crashing(daemon: Daemon, point: str) -> None:
    """Restart ``daemon`` armed to kill itself at ``point``."""
    daemon.stop()
    daemon.env["FIREWALLD_FAILPOINTS"] = point
    daemon.start()
    del daemon.env["FIREWALLD_FAILPOINTS"]  # the restart after the crash is a healthy daemon


async def restart_after_crash(daemon: Daemon) -> None:
    """Wait for the armed daemon to die, start a healthy one and wait for the shim to reconnect."""
    assert daemon.proc is not None
    await anyio.to_thread.run_sync(lambda: daemon.proc.wait(timeout=20))  # type: ignore[union-attr]
    daemon.kill9()  # reap it
    daemon.start()
    await wait_for(lambda: connected_sessions(daemon), "the shim to reconnect")


@pytest.mark.parametrize("point", ["confirm.approved", "confirm.committed"])
async def test_daemon_killed_during_a_confirm(point: str, daemon: Daemon, tmp_path: Path) -> None:
    """Killed inside the confirm: the call does not run and the agent is told so; after the restart
    the action waits again under a new code, and that code runs it exactly once."""
    crashing(daemon, point)
    effects = tmp_path / "fx"
    command = fixture_shim(effects, extra=("--decision-timeout", "2"))
    async with connect(command, mode="legacy", env=daemon.env) as agent:
        paused = await agent.call_tool("delete_user", {"id": 42})
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = daemon.pending()
        cut = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
        assert cut.is_error and "Nothing was run" in tool_text(cut), tool_text(cut)
        assert effects_of(effects) == []

        await restart_after_crash(daemon)
        await wait_for(lambda: [a["action_id"] for a in daemon.pending()] == [action_id], "the action back")
        (again,) = daemon.pending()
        assert effects_of(effects) == []
        done = await agent.call_tool("firewall_confirm", {"otp": again["code"]})
        assert not done.is_error, tool_text(done)
        twice = await agent.call_tool("firewall_confirm", {"otp": again["code"]})
    assert twice.is_error
    assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]
    await wait_for(lambda: ("outcome", "ok") in events_of(daemon, action_id), "the outcome")
    events = events_of(daemon, action_id)
    assert events[0] == ("paused", "approve")
    assert events.count(("outcome", "ok")) == 1 and events.count(("outcome", "sent")) == 1
    if point == "confirm.approved":  # the approval never committed: nothing but the new code in between
        assert [e for e, _ in events].count("confirm_ok") == 1
        assert ("code_reissued", None) in events and ("reopened", None) not in events
    else:  # the approval committed, the shim never heard of it: it is reopened as not run
        assert [e for e, _ in events].count("confirm_ok") == 2
        assert events.index(("outcome", "not_run")) < events.index(("reopened", None))
        assert events.index(("reopened", None)) < events.index(("outcome", "sent"))


async def test_daemon_killed_while_the_approved_call_runs(daemon: Daemon, tmp_path: Path) -> None:
    """The approved call already reached the server: its result still reaches the agent, the audit gets
    'sent' and 'ok' (replayed after the reconnect), and the action is not put back to wait."""
    effects = tmp_path / "fx"
    config = write_config(tmp_path / "p.json", POLICY)
    async with connect(fixture_shim(effects, config=config), mode="legacy", env=daemon.env) as agent:
        paused = await agent.call_tool("get_slow", {"seconds": 3, "steps": 1})
        assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = daemon.pending()

        async def kill_while_running() -> None:
            await wait_for(lambda: ("outcome", "sent") in events_of(daemon, action_id), "the call to go out")
            daemon.kill9()

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_while_running)
            done = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
        assert not done.is_error, tool_text(done)
        assert tool_text(done) == "slept 3.0s in 1 steps"
        daemon.start()
        await wait_for(lambda: connected_sessions(daemon), "the shim to reconnect")
        await wait_for(lambda: ("outcome", "ok") in events_of(daemon, action_id), "the replayed outcome")
        assert daemon.pending() == []
    events = events_of(daemon, action_id)
    assert [e for e, _ in events].count("confirm_ok") == 1
    assert ("reopened", None) not in events and ("outcome", "unknown") not in events
    assert events.count(("outcome", "ok")) == 1
