"""The console against a real firewalld: actions paused by a real shim, driven by the official MCP SDK.

Each test builds the app with the production factory, runs it headless with Pilot, and waits for
conditions with a deadline (never a bare sleep).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, DataTable, Digits, Static

from conftest import Daemon, effects_of, fixture_shim, write_config
from console.app import FirewallConsole, build_app
from console.confirm import ConfirmScreen
from console.model import Action
from console.pending import ActionList
from helpers.mcp_agent import connect, tool_text

SIZE = (100, 32)


async def until(pilot: Pilot[None], predicate: Callable[[], object], limit: float = 15.0) -> None:
    """Let the app run until ``predicate()`` holds, or fail after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while not predicate():
            await pilot.pause(0.05)


def action_id_of(text: str) -> str:
    """The action id a PAUSED_FOR_APPROVAL result names."""
    payload = json.loads(text)
    assert payload["status"] == "PAUSED_FOR_APPROVAL"
    action_id: str = payload["action_id"]
    return action_id


def shown(app: FirewallConsole, action_id: str) -> Action | None:
    """The action as the console holds it, if it is listed."""
    return app.state.action(action_id) if app.state is not None else None


def static_text(app: FirewallConsole, selector: str) -> str:
    """The plain text a Static shows."""
    content = app.query_one(selector, Static).content
    return content.plain if isinstance(content, Content) else str(content)


async def test_paused_action_appears_with_code_and_arguments(daemon: Daemon, tmp_path: Path) -> None:
    """A call paused by the shim is listed with the daemon's code and its frozen arguments."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
            paused = await agent.call_tool("delete_user", {"id": 42, "note": "naïve \u202e text"})
            action_id = action_id_of(tool_text(paused))
            await until(pilot, lambda: shown(app, action_id))
            (expected,) = daemon.pending()
            assert app.query_one(ActionList).selected == shown(app, action_id)
            assert app.query_one("#code-digits", Digits).value == expected["code"]
            assert expected["code"] in static_text(app, "#code-meta")
            assert "approve delete_user" in static_text(app, "#code-prompt")
            arguments = static_text(app, "#arguments-json")
            assert '"id": 42' in arguments
            assert "naïve \\u202e text" in arguments  # the bidi override is spelt out, not obeyed
            # The list may get its width a frame after its first row (it was hidden while empty).
            row = app.query_one(ActionList)
            await until(pilot, lambda: "delete_user" in row.get_option_at_index(0).prompt.plain)  # type: ignore[union-attr]
            svg = app.export_screenshot()
    assert expected["code"] in svg
    assert effects_of(tmp_path / "fx") == []


async def test_deny_from_the_console_makes_confirm_fail(daemon: Daemon, tmp_path: Path) -> None:
    """`d` denies the selected action; the agent's confirm with the right code then fails as denied."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="legacy", env=daemon.env) as agent:
            action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 5})))
            await until(pilot, lambda: shown(app, action_id))
            action = shown(app, action_id)
            assert action is not None
            await pilot.press("d")
            await until(pilot, lambda: app.state is not None and not app.state.actions)
            result = await agent.call_tool("firewall_confirm", {"otp": action.code})
    assert result.is_error
    assert "denied" in tool_text(result)
    assert effects_of(tmp_path / "fx") == []
    denied = [r for r in daemon.audit() if r["event"] == "denied"]
    assert [r["action_id"] for r in denied] == [action_id]


async def test_deny_all_asks_first(daemon: Daemon, tmp_path: Path) -> None:
    """`D` asks in a modal; No keeps the actions, Yes denies all of them."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
            for n in (1, 2):
                await agent.call_tool("delete_user", {"id": n})
            await until(pilot, lambda: app.state is not None and len(app.state.actions) == 2)
            await pilot.press("D")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert len(daemon.pending()) == 2
            await pilot.press("D")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: app.state is not None and not app.state.actions)
    assert daemon.pending() == []


async def test_expired_action_leaves_the_list(daemon: Daemon, tmp_path: Path) -> None:
    """An action whose code expires disappears without any key pressed (pushed by the daemon)."""
    config = write_config(
        tmp_path / "policy.json", {"global": {"default_action": "block", "otp_ttl_seconds": 1}}
    )
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(
            fixture_shim(tmp_path / "fx", config=config), mode="auto", env=daemon.env
        ) as agent:
            action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 9})))
            await until(pilot, lambda: shown(app, action_id))
            await until(pilot, lambda: app.state is not None and shown(app, action_id) is None)
            assert app.query_one("#pending-switcher", ContentSwitcher).current == "pending-empty"
    expired = [r for r in daemon.audit() if r["event"] == "expired"]
    assert [r["action_id"] for r in expired] == [action_id]


async def test_console_survives_a_daemon_restart(daemon: Daemon, tmp_path: Path) -> None:
    """Daemon stops: the console says so. Daemon back: it reconnects, re-subscribes and shows new actions."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        # The shim stays up across the restart: a dead shim's actions are withdrawn, by design.
        async with connect(fixture_shim(tmp_path / "a"), mode="auto", env=daemon.env) as agent:
            before = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 1})))
            await until(pilot, lambda: shown(app, before))
            daemon.stop()
            await until(pilot, lambda: not app.connected)
            assert "not reachable" in static_text(app, "#pending-offline")
            daemon.start()
            await until(pilot, lambda: app.connected and app.state is not None)
            # Pending actions survive the restart; and the new subscription delivers new pauses live.
            await until(pilot, lambda: shown(app, before))
            after = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 2})))
            await until(pilot, lambda: shown(app, after))
        assert app.return_code is None  # still running


async def test_console_started_before_the_daemon(home: Path) -> None:
    """No daemon yet: the console explains and retries; once one starts, `r` connects at once."""
    daemon = Daemon(home)
    app = build_app(daemon.socket)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: "not reachable" in static_text(app, "#pending-offline"))
            assert "firewalld is not running" in static_text(app, "#pending-offline")
            assert not app.connected
            daemon.start()
            await pilot.press("r")
            await until(pilot, lambda: app.connected, limit=10.0)
            assert app.query_one("#pending-switcher", ContentSwitcher).current == "pending-empty"
    finally:
        if daemon.proc is not None:
            daemon.stop()


async def test_new_action_alerts(daemon: Daemon, tmp_path: Path) -> None:
    """A new action flashes the list and notifies; the desktop notifier is called only when enabled."""
    calls: list[tuple[str, str]] = []
    app = build_app(
        daemon.socket, desktop_notifications=True, notifier=lambda title, body: calls.append((title, body))
    )
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
            action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 3})))
            await until(pilot, lambda: shown(app, action_id))
            assert app.query_one(ActionList).has_class("-flash")
            await until(pilot, lambda: calls)
            code = daemon.pending()[0]["code"]
    (title, body), *_ = calls
    assert "delete_user" in body
    assert code not in body and code not in title  # a desktop notification never carries the code


async def test_history_shows_the_audit_log_filtered(daemon: Daemon, tmp_path: Path) -> None:
    """The history tab reads the audit log; `tool:NAME` narrows it to one tool."""
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
            await agent.call_tool("read_note", {"name": "groceries"})
            await agent.call_tool("delete_user", {"id": 8})
        await pilot.press("h")
        table = app.query_one("#history-table", DataTable)
        await until(pilot, lambda: table.row_count >= 3)
        await pilot.click("#history-filter")
        await pilot.press(*"tool:delete_user")
        await until(pilot, lambda: "tool:delete_user" in static_text(app, "#history-status"))
        tools = {str(table.get_row_at(i)[2]) for i in range(table.row_count)}
        assert tools == {"delete_user"}


async def test_policy_problem_is_reported(daemon: Daemon, tmp_path: Path) -> None:
    """A shim whose policy file does not load: the console says which key is wrong."""
    config = write_config(tmp_path / "bad.json", {"global": {"default_actoin": "block"}})
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(tmp_path / "fx", config=config), mode="auto", env=daemon.env):
            await until(pilot, lambda: app.policy_problems)
    assert "default_actoin" in app.policy_problems[0]


async def test_cut_arguments_are_marked_and_fetched_on_demand(daemon: Daemon, tmp_path: Path) -> None:
    """Arguments the daemon cut from its listing show their size and hash; `f` fetches them all."""
    config = write_config(
        tmp_path / "policy.json",
        {"global": {"allow_prefixes": [], "block_keywords": ["echo"], "default_action": "allow"}},
    )
    payload = {"blob": "x" * 50_000, "end": "THE-LAST-WORD \x1b[2A"}
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(
            fixture_shim(tmp_path / "fx", config=config), mode="auto", env=daemon.env
        ) as agent:
            action_id = action_id_of(tool_text(await agent.call_tool("get_echo", {"payload": payload})))
            await until(pilot, lambda: shown(app, action_id))
            (listed,) = daemon.pending()
            cut = static_text(app, "#arguments-json")
            assert f"Cut: the arguments are {listed['arguments_bytes']:,} bytes" in cut
            assert f"sha256 {listed['arguments_sha256']}" in cut
            assert "THE-LAST-WORD" not in cut
            await pilot.press("f")
            await until(pilot, lambda: "THE-LAST-WORD" in static_text(app, "#arguments-json"))
            assert "THE-LAST-WORD \\u001b[2A" in static_text(app, "#arguments-json")  # escaped, whole
