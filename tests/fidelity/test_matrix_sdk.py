"""The transparency matrix, official Python SDK rows: ``legacy`` and ``auto`` against four real servers.

Each cell runs the same session directly and through the shim (permissive policy) and compares the tool
list (less ``firewall_confirm``, listed exactly once), every result, every error and the progress count.
Then the approval flow: the matrix policy pauses one tool per server; the code approves it; it runs once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import Daemon, shim_command
from helpers.fidelity import write_policy
from helpers.matrix import MATRIX_POLICY, SERVERS, ServerSpec, rooted
from helpers.mcp_agent import MODES, connect, tool_text

pytestmark = [pytest.mark.npm]
CELLS = [(mode, name) for name in SERVERS for mode in MODES]


async def all_tools(agent: Client) -> list[dict[str, Any]]:
    """Every page of tools/list, as plain JSON."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await agent.list_tools(cursor=cursor)
        tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return tools


async def session(agent: Client, spec: ServerSpec, work: Path) -> dict[str, Any]:
    """What one session sees: the tool list, each call's result or error, and the progress count."""
    seen: dict[str, Any] = {"tools": await all_tools(agent), "calls": []}
    for tool, arguments in spec.calls:
        try:
            result = await agent.call_tool(tool, rooted(arguments, work))
            seen["calls"].append(result.model_dump(mode="json", by_alias=True, exclude_none=True))
        except MCPError as exc:
            seen["calls"].append({"error": [exc.error.code, exc.error.message]})
    tool, arguments, steps = spec.progress
    if tool:
        count = 0
        done = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            nonlocal count
            count += 1
            if count == steps:
                done.set()

        result = await agent.call_tool(tool, arguments, progress_callback=on_progress)
        with anyio.fail_after(10):  # callbacks run as tasks; wait for the ones already due
            await done.wait()
        seen["progress"] = (count, tool_text(result))
    return seen


@pytest.mark.parametrize(("mode", "server"), CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
async def test_cell_matches_a_direct_session(
    mode: str, server: str, tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Directly and through the shim: the same tools (plus firewall_confirm), results, errors, progress."""
    spec = SERVERS[server]
    seen = []
    for way in ("direct", "shim"):
        target = spec.command(tmp_path)
        command = target if way == "direct" else shim_command(target, config=permissive)
        async with connect(command, mode=mode, env=fdaemon.env) as agent:
            seen.append(await session(agent, spec, tmp_path))
    direct, shimmed = seen
    names = [t["name"] for t in shimmed["tools"]]
    assert names.count("firewall_confirm") == 1
    shimmed["tools"] = [t for t in shimmed["tools"] if t["name"] != "firewall_confirm"]
    assert shimmed["tools"] == direct["tools"]
    assert shimmed["calls"] == direct["calls"]
    assert shimmed.get("progress") == direct.get("progress")
    assert any(c.get("isError") or "error" in c for c in direct["calls"])  # the matrix covers an error


@pytest.mark.parametrize(("mode", "server"), CELLS, ids=[f"{m}-{s}" for m, s in CELLS])
async def test_cell_approval_flow(mode: str, server: str, tmp_path: Path, fdaemon: Daemon) -> None:
    """The server's dangerous call is paused and runs nothing; after the code it runs once, as paused."""
    spec = SERVERS[server]
    policy = write_policy(tmp_path, "matrix", MATRIX_POLICY)
    tool, arguments = spec.approval
    arguments = rooted(arguments, tmp_path)
    async with connect(
        shim_command(spec.command(tmp_path), config=policy), mode=mode, env=fdaemon.env
    ) as agent:
        await agent.list_tools()
        paused = await agent.call_tool(tool, arguments)
        assert paused.is_error and "PAUSED_FOR_APPROVAL" in tool_text(paused)
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = [a for a in fdaemon.pending() if a["action_id"] == action_id]
        assert action["arguments"] == arguments
        done = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
        again = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert not done.is_error, tool_text(done)
    assert again.is_error
    assert spec.ran(tmp_path)
    if server == "everything":
        assert "5" in tool_text(done)
