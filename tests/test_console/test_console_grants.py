"""Grants in the TUI: `g` on a paused action, the scope choice, the grants tab and `x` to revoke.

Against a real firewalld (a real shim, the official SDK as the agent) and against the replay
backend for the "always" flow (its diff is shown before anything is written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_console.test_console_live import SIZE, action_id_of, shown, until
from textual.widgets import DataTable

from conftest import Daemon, effects_of, fixture_shim
from console.app import build_app
from console.confirm import ConfirmScreen
from console.grant_screen import GrantScreen, candidates
from console.grants_view import GrantView
from console.replay import ReplayBackend
from console.screenshots import NOW, SOCKET, sample_state, settle
from helpers.mcp_agent import connect, tool_text

DIFF = """--- /home/me/firewall_config.json (now)
+++ /home/me/firewall_config.json (after)
@@ -3,5 +3,6 @@
   "global": {
-    "default_action": "approve"
+    "default_action": "approve",
+    "approved": [{"name": "added from the firewall console on 2026-12-07 22:40 UTC (approving A-1F2E3D4C)", \
"tool": "delete_repository", "args": [{"path": "$.owner", "equals": "ada"}], "action": "allow"}]
   }
 }
"""


def sample_grants() -> tuple[GrantView, ...]:
    """Two live grants: one for a chat, one timed for matching arguments."""
    return (
        GrantView(
            "G-5EA1B0C2",
            "args",
            "write_file",
            "filesystem",
            "",
            "G-5EA1B0C2: write_file with path under /home/ada/shop, server 'filesystem', until 22:50:00",
            NOW - 60,
            NOW + 540,
            "A-77AB01CD",
            4,
            "path under /home/ada/shop",
        ),
        GrantView(
            "G-0C3D9E21",
            "chat",
            "delete_repository",
            "github",
            "S-3F2A9C01",
            "G-0C3D9E21: delete_repository in chat S-3F2A9C01",
            NOW - 300,
            None,
            "A-1F2E3D4C",
            1,
        ),
    )


def test_candidates_offer_paths_as_directories_and_short_values_as_equals() -> None:
    offered = candidates(json.dumps({"path": "/home/a/x.txt", "n": 3, "big": "x" * 500, "l": [1]}))
    assert offered == [{"key": "path", "under": "/home/a"}, {"key": "n", "equals": 3}]


async def test_grant_for_the_chat_from_the_console_then_revoke(daemon: Daemon, tmp_path: Path) -> None:
    """`g`, scope 2: the agent's next calls of the tool run; `G`, `x`, `y`: they are paused again."""
    effects = tmp_path / "fx"
    app = build_app(daemon.socket)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.connected)
        async with connect(fixture_shim(effects), mode="auto", env=daemon.env) as agent:
            action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 1})))
            await until(pilot, lambda: shown(app, action_id))
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, GrantScreen))
            await pilot.press("escape")  # cancel: nothing made
            await until(pilot, lambda: not isinstance(app.screen, GrantScreen))
            assert json.loads(daemon.console("grants", "--json").stdout) == []
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, GrantScreen))
            await pilot.press("2")
            await pilot.click("#grant-yes")
            await until(pilot, lambda: json.loads(daemon.console("grants", "--json").stdout) != [])
            (grant,) = json.loads(daemon.console("grants", "--json").stdout)
            assert grant["scope"] == "chat" and grant["action_id"] == action_id
            assert tool_text(await agent.call_tool("delete_user", {"id": 2})) == "deleted user 2"
            await pilot.press("G")
            table = app.query_one("#grants-table", DataTable)
            await until(pilot, lambda: table.row_count == 1)
            assert grant["grant_id"] in str(table.get_row_at(0)[0])
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: table.row_count == 0)
            again = await agent.call_tool("delete_user", {"id": 3})
            assert "PAUSED_FOR_APPROVAL" in tool_text(again)
    assert json.loads(daemon.console("grants", "--json").stdout) == []
    assert [e["id"] for e in effects_of(effects)] == [2]


async def test_always_shows_the_diff_and_writes_only_after_yes() -> None:
    """Scope 4 asks the daemon for the change, shows it, and grants only on yes."""
    backend = ReplayBackend(sample_state(), socket_path=SOCKET, diff=DIFF)
    app = build_app(SOCKET, backend=backend, clock=lambda: NOW)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        first = app.state.actions[0] if app.state else None
        assert first is not None
        for answer in ("n", "y"):
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, GrantScreen))
            await pilot.press("4")
            await pilot.click("#grant-yes")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            detail: Any = app.screen.query_one("#confirm-detail")
            assert '"approved": [{"name": "added from the firewall console' in detail.content.plain
            await pilot.press(answer)
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            await settle(pilot)
    ((action_id, choice, base),) = backend.granted
    assert (action_id, choice.scope, base) == (first.action_id, "always", "0" * 64)
    assert backend.approved == [first.action_id]


async def test_args_scope_needs_a_ticked_argument() -> None:
    """Scope 3 with nothing ticked says why, and makes nothing."""
    backend = ReplayBackend(sample_state(), socket_path=SOCKET)
    app = build_app(SOCKET, backend=backend, clock=lambda: NOW)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GrantScreen))
        await pilot.press("3")
        await pilot.click("#grant-match-0")  # untick the one ticked
        await pilot.click("#grant-yes")
        await pilot.pause()
        assert isinstance(app.screen, GrantScreen)
        assert "Tick at least one" in str(app.screen.query_one("#grant-error").render())
    assert backend.granted == []
