"""The bundled SQL rule through real processes: an SQL tool allowed by name still pauses a disguised DROP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Daemon, effects_of, fixture_shim, write_config
from daemon.config import DEFAULT_CONFIG
from helpers.mcp_agent import MODES, connect, tool_text

pytestmark = pytest.mark.parametrize("mode", MODES)


def sql_tool_allowed(tmp_path: Path) -> Path:
    """The bundled policy, plus a rule after its SQL rules that allows the execute_sql tool by name."""
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["global"]["rules"].append({"name": "our SQL tool", "tool": "execute_sql", "action": "allow"})
    return write_config(tmp_path / "policy.json", config)


async def test_disguised_drop_is_paused_and_runs_only_after_the_code(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """SELECT runs at once; a DROP disguised by comments and quoting pauses, and runs once when confirmed."""
    effects = tmp_path / "fx"
    evasion = 'SELECT 1; DROP/**/TABLE -- x\n"users"'
    command = fixture_shim(effects, config=sql_tool_allowed(tmp_path))
    async with connect(command, mode=mode, env=daemon.env) as agent:
        read = await agent.call_tool("execute_sql", {"sql": "SELECT * FROM users WHERE note = 'drop me'"})
        assert not read.is_error and tool_text(read) == "ran"

        paused = await agent.call_tool("execute_sql", {"sql": evasion})
        assert paused.is_error and "PAUSED_FOR_APPROVAL" in tool_text(paused)
        assert [e["sql"] for e in effects_of(effects)] == ["SELECT * FROM users WHERE note = 'drop me'"]
        (action,) = daemon.pending()
        assert action["arguments"] == {"sql": evasion}
        assert "SQL that writes" in action["rule"]

        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert not confirmed.is_error and tool_text(confirmed) == "ran"
    assert [e["sql"] for e in effects_of(effects)][1:] == [evasion]
