"""Audit flood: cheap allowed calls past the audit's row limit do not push out an approval's rows."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from conftest import Daemon, effects_of, fixture_shim
from helpers.mcp_agent import connect, tool_text

from .test_approval_flow import action_id_of, pending_by_id

LIMIT = 1000  # the smallest audit_max_rows the settings accept


async def test_allowed_calls_past_the_limit_leave_an_approval_in_the_log(home: Path, tmp_path: Path) -> None:
    """An approval (pause, confirm, outcome) then 1,100 allowed calls with a 1,000-row limit: at
    the prune (the first housekeeping tick after a restart) allowed rows go, the approval stays."""
    daemon = Daemon(home)
    daemon.env["FIREWALLD_AUDIT_MAX_ROWS"] = str(LIMIT)
    daemon.start()
    effects = tmp_path / "fx"
    try:
        async with connect(fixture_shim(effects), mode="legacy", env=daemon.env) as agent:
            await agent.list_tools()
            action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 42})))
            code = pending_by_id(daemon, action_id)["code"]
            confirmed = await agent.call_tool("firewall_confirm", {"otp": code})
            assert tool_text(confirmed) == "deleted user 42"
            for i in range(LIMIT + 100):
                assert not (await agent.call_tool("read_note", {"name": f"n{i}"})).is_error
        assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]

        def allowed() -> int:
            return sum(r["event"] == "decision" and r["decision"] == "allow" for r in daemon.audit(5000))

        assert allowed() == LIMIT + 100
        daemon.stop()
        daemon.start()  # prunes at its first housekeeping tick
        deadline = time.monotonic() + 30
        while allowed() > LIMIT:  # a readiness wait for the prune
            assert time.monotonic() < deadline, "the audit was not pruned"
            await anyio.sleep(0.1)
        events = {r["event"] for r in daemon.audit(5000) if r["action_id"] == action_id}
        assert {"paused", "confirm_ok", "outcome"} <= events
    finally:
        if daemon.proc is not None:
            daemon.stop()
