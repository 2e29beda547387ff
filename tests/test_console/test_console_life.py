"""The console's share of issue 15, against a real firewalld and shim: which policy each session
uses and what is wrong with it, policy errors shown line by line, and a missing desktop notifier
said once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from conftest import Daemon, fixture_shim, write_config
from console.app import FirewallConsole, build_app
from helpers.mcp_agent import connect, tool_text

SIZE = (100, 32)


async def until(pilot: Pilot[None], predicate: Callable[[], object], limit: float = 15.0) -> None:
    """Let the app run until ``predicate()`` holds, or fail after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while not predicate():
            await pilot.pause(0.05)


def action_id_of(text: str) -> str:
    """The action id a PAUSED_FOR_APPROVAL result names."""
    action_id: str = json.loads(text)["action_id"]
    return action_id


def static_text(app: FirewallConsole, selector: str) -> str:
    """The plain text a Static shows."""
    content = app.query_one(selector, Static).content
    return content.plain if isinstance(content, Content) else str(content)


def record_notifications(app: FirewallConsole) -> list[tuple[str, str]]:
    """Every (title, message) the app notifies from now on (it still shows them)."""
    seen: list[tuple[str, str]] = []
    original = app.notify

    def notify(message: str, *, title: str = "", **kwargs: Any) -> None:
        seen.append((title, message))
        original(message, title=title, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return seen


async def test_sessions_view_shows_the_policy_and_a_misspelt_name(daemon: Daemon, tmp_path: Path) -> None:
    """A session started with --name strpe: its row names the policy file and section, and the
    summary above the table carries the warning."""
    config = write_config(tmp_path / "policy.json", {"global": {}, "servers": {"stripe": {}}})
    app = build_app(daemon.socket)
    async with app.run_test(size=(200, 32)) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(
            fixture_shim(tmp_path / "fx", config=config, name="strpe"), mode="auto", env=daemon.env
        ):
            await until(pilot, lambda: app.state is not None and app.state.sessions)
            await pilot.press("s")
            table = app.query_one("#sessions-table", DataTable)
            await until(pilot, lambda: table.row_count == 1)
            row = [str(cell) for cell in table.get_row_at(0)]
            summary = static_text(app, "#sessions-summary")
    assert row[-1] == f"⚠ {config} [strpe]"
    assert "matches no server section" in summary and "did you mean 'stripe'?" in summary
    assert app.state is not None and app.state.sessions[0].config_path == str(config)


async def test_policy_errors_are_shown_line_by_line(daemon: Daemon, tmp_path: Path) -> None:
    """A policy file with two mistakes: the notification has two lines, not a spelt-out newline."""
    config = write_config(tmp_path / "bad.json", {"global": {"default_actoin": "block", "otp_lenght": 6}})
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx", config=config), mode="auto", env=daemon.env):
            await until(pilot, lambda: app.policy_problems)
    (message,) = [m for t, m in seen if t.startswith("Policy file problem")]
    assert "\\u000a" not in message
    lines = message.split("\n")
    assert len(lines) == 2
    assert "default_actoin" in lines[0] and "otp_lenght" in lines[1]


async def test_a_missing_desktop_notifier_is_reported_once(daemon: Daemon, tmp_path: Path) -> None:
    """--desktop-notify where no notification can be shown: one warning, however many actions."""
    calls: list[str] = []

    def failing(title: str, body: str) -> bool:
        calls.append(body)
        return False

    app = build_app(daemon.socket, desktop_notifications=True, notifier=failing)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        seen = record_notifications(app)
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
            for user in (1, 2):
                action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": user})))
                await until(pilot, lambda a=action_id: app.state and app.state.action(a))  # type: ignore[misc]
                await until(pilot, lambda n=user: len(calls) >= n)  # type: ignore[misc]
            await pilot.pause(0.2)
    told = [m for t, m in seen if t == "No desktop notifications"]
    assert len(calls) == 2 and len(told) == 1
    assert "--desktop-notify" in told[0]
