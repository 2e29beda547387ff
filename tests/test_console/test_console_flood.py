"""The approval-flood view: a chat with many actions waiting is one group row; `a`/`d` on it settle
the whole group after one confirmation; Enter shows its actions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from test_console.test_console_live import SIZE, until

from conftest import Daemon, effects_of, fixture_shim
from console.app import build_app
from console.confirm import ConfirmScreen
from console.flood import GROUP_OVER, Group, entries
from console.model import DaemonState
from console.pending import ActionList
from console.replay import ReplayBackend
from console.screenshots import NOW, SOCKET, sample_state, settle
from helpers.mcp_agent import connect


def flood_state() -> DaemonState:
    """The sample state, plus six actions from the chat of its first one."""
    state = sample_state()
    first = state.actions[0]
    extra = tuple(
        replace(first, action_id=f"A-F100D00{n}", tool="delete_branch", created=first.created + n)
        for n in range(6)
    )
    return replace(state, actions=(*extra, *state.actions))


def test_a_chat_with_more_than_the_limit_is_one_row() -> None:
    state = flood_state()
    size = sum(1 for a in state.actions if a.session_id == state.actions[0].session_id)
    rows = entries(state.actions, set())
    groups = [r for r in rows if isinstance(r, Group)]
    assert len(groups) == 1 and len(groups[0].actions) == size > GROUP_OVER
    assert len(rows) == len(state.actions) - size + 1
    opened = entries(state.actions, {groups[0].session_id})
    assert len(opened) == len(rows) + size


async def test_group_approve_and_deny_ask_once() -> None:
    state = flood_state()
    backend = ReplayBackend(state, socket_path=SOCKET)
    app = build_app(SOCKET, backend=backend, clock=lambda: NOW)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        listing = app.query_one(ActionList)
        group = listing.selected_group
        assert group is not None and listing.selected is None
        size = len(group.actions)
        await pilot.press("enter")  # shows the group's actions under it
        await until(pilot, lambda: listing.option_count == len(state.actions) + 1)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert backend.denied == []
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: len(backend.approved) == size)
        await settle(pilot)
    assert sorted(backend.approved) == sorted(a.action_id for a in group.actions)
    assert backend.denied == []


async def test_flood_from_a_real_chat_denied_as_a_group(daemon: Daemon, tmp_path: Path) -> None:
    """Five paused calls of one chat: one row; `d`, `y`: all five denied, nothing ran."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="legacy", env=daemon.env) as agent:
            for n in range(5):
                await agent.call_tool("delete_user", {"id": n})
            listing = app.query_one(ActionList)

            def grouped() -> Any:
                return app.state is not None and len(app.state.actions) == 5 and listing.selected_group

            await until(pilot, grouped)
            assert listing.option_count == 1
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: app.state is not None and not app.state.actions)
    assert daemon.pending() == []
    assert len([r for r in daemon.audit() if r["event"] == "denied"]) == 5
    assert effects_of(tmp_path / "fx") == []
