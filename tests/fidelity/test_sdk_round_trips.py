"""Round trips that the official SDK drives itself, directly and through the shim, in both eras.

The fidelity server's tools ask the client in the middle of a call (elicitation, roots, sampling): at
2026-07-28 as an ``input_required`` result that the SDK answers by retrying the call, before that as a
server-to-client request. The approval of a paused call must survive that: one approval, one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.context import ClientRequestContext

from conftest import Daemon, shim_command
from helpers.fidelity import FIDELITY_SERVER, effects
from helpers.mcp_agent import MODES, READ_TIMEOUT_SECONDS, recorded_messages, server_params, tapped, tool_text

pytestmark = pytest.mark.parametrize("mode", MODES)


class Callbacks:
    """The client's side of the server's questions, counting how often each was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.notifications: list[str] = []
        self.changed = anyio.Event()

    async def elicit(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"sure": True})

    async def roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/a"), types.Root(uri="file:///srv/b")])

    async def sample(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked.append("sampling")
        content = types.TextContent(type="text", text="a short summary")
        return types.CreateMessageResult(role="assistant", content=content, model="test-model")

    async def message(self, message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if isinstance(method, str):
            self.notifications.append(method)
            if method == "notifications/tools/list_changed":
                self.changed.set()


def make_client(command: list[str], env: dict[str, str], mode: str, calls: Callbacks) -> Client:
    """An SDK client with every callback a server may need."""
    return Client(
        server_params(command, env),
        mode=mode,  # type: ignore[arg-type]
        read_timeout_seconds=READ_TIMEOUT_SECONDS,
        elicitation_callback=calls.elicit,
        list_roots_callback=calls.roots,
        sampling_callback=calls.sample,
        message_handler=calls.message,
    )


def server(fx: Path) -> list[str]:
    """The fidelity server, recording effects in ``fx``."""
    return [sys.executable, str(FIDELITY_SERVER), "--effects", str(fx)]


async def test_questions_mid_call_match_a_direct_session(
    mode: str, tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """Roots and sampling asked in the middle of allowed calls: the same answers as without the shim."""
    results = []
    for way in ("direct", "shim"):
        target = server(tmp_path / f"{way}.fx")
        command = target if way == "direct" else shim_command(target, config=guarded)
        calls = Callbacks()
        async with make_client(command, fdaemon.env, mode, calls) as agent:
            roots = await agent.call_tool("get_roots", {})
            summary = await agent.call_tool("get_summary", {"text": "long text"})
        results.append((tool_text(roots), tool_text(summary), sorted(calls.asked)))
    assert results[0] == results[1]
    assert json.loads(results[0][0]) == ["file:///srv/a", "file:///srv/b"]
    assert results[0][1] == "a short summary"


async def test_approved_call_that_asks_the_user_runs_once(
    mode: str, tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """Paused, approved, then the server asks for confirmation: the SDK answers, and it runs exactly once
    (in the 2026-07-28 era the answer rides on a retry, which is approved like any other input)."""
    fx, tap = tmp_path / "fx", tmp_path / "tap"
    calls = Callbacks()
    command = tapped(shim_command(server(fx), config=guarded), tap)
    async with make_client(command, fdaemon.env, mode, calls) as agent:
        paused = await agent.call_tool("delete_record", {"id": 7})
        assert paused.is_error and "PAUSED_FOR_APPROVAL" in tool_text(paused)
        assert calls.asked == [] and effects(fx) == []
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = [a for a in fdaemon.pending() if a["action_id"] == action_id]
        done = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
        if mode == "auto":
            # The SDK's retry carries the user's answer, which nobody approved yet: it is shown in the
            # console with the frozen arguments and needs its own code before it reaches the server.
            assert done.is_error and "PAUSED_FOR_APPROVAL" in tool_text(done), tool_text(done)
            assert effects(fx) == []
            (again,) = fdaemon.pending()
            assert again["arguments"]["id"] == 7 and "inputResponses" in again["arguments"]
            done = await agent.call_tool("firewall_confirm", {"otp": again["code"]})
    assert not done.is_error, tool_text(done)
    assert tool_text(done) == "deleted record 7"
    assert calls.asked == ["elicitation"]
    assert effects(fx) == [{"id": 7, "tool": "delete_record"}]
    events = [r["event"] for r in fdaemon.audit() if r["action_id"] == action_id]
    assert events.count("confirm_ok") == 1
    received = recorded_messages(tap / "to_client.bin")
    if mode == "auto":  # the question came as an input_required result, and the SDK retried the confirm
        assert [m["result"].get("resultType") for m in received if "result" in m].count("input_required") == 1
        sent = [m for m in recorded_messages(tap / "from_client.bin") if m.get("method") == "tools/call"]
        assert [m["params"]["name"] for m in sent] == [
            "delete_record",
            "firewall_confirm",
            "firewall_confirm",
            "firewall_confirm",
        ]
    else:  # the question came as a server-to-client request in the middle of the confirmed call
        assert [m.get("method") for m in received].count("elicitation/create") == 1


async def test_tool_list_changes_reach_the_client(
    mode: str, tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """A server that adds a tool announces it; the client sees it, and the new listing (one confirm),
    once the human has accepted the new tool (new tools on a known server wait for review by default)."""
    calls = Callbacks()
    command = shim_command(server(tmp_path / "fx"), config=guarded)
    async with make_client(command, fdaemon.env, mode, calls) as agent:
        before = [t.name for t in (await agent.list_tools()).tools]
        if mode == "auto":
            async with agent.listen(tools_list_changed=True) as subscription:
                await agent.call_tool("add_tool", {"name": "fresh_tool"})
                with anyio.fail_after(READ_TIMEOUT_SECONDS):
                    event = await subscription.__anext__()
                assert type(event).__name__ == "ToolsListChanged"
        else:
            await agent.call_tool("add_tool", {"name": "fresh_tool"})
            with anyio.fail_after(READ_TIMEOUT_SECONDS):
                await calls.changed.wait()
        hidden = [t.name for t in (await agent.list_tools(cache_mode="refresh")).tools]
        (review,) = [  # the daemon serves the whole module: this test's is the one waiting
            p
            for p in json.loads(fdaemon.console("tools", "--json").stdout)
            if p["tool"] == "fresh_tool" and p["state"] == "new"
        ]
        assert review["state"] == "new"
        fdaemon.console("accept", review["review_id"])
        after = [t.name for t in (await agent.list_tools(cache_mode="refresh")).tools]
    assert "fresh_tool" not in before and "fresh_tool" not in hidden and "fresh_tool" in after
    assert after.count("firewall_confirm") == 1
