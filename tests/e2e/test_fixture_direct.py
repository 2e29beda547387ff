"""The SDK client against the fixture server directly (no shim), through the byte tap, in both client modes.

These prove the test-side pieces the shim tests stand on: the fixture server, the tap and the agent helpers.
They also pin down how the SDK client behaves on the wire, which the shim has to live with.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import get_default_environment

from helpers.mcp_agent import (
    MODES,
    connect,
    fixture_command,
    minimal_env,
    recorded_messages,
    server_params,
    tool_text,
)

BLOB_SIZE = 10_000_000
# A bound on waiting for callbacks that are already due: a deadline against hangs, not a timing assertion.
PROGRESS_DEADLINE_SECONDS = 5.0


@dataclass(frozen=True)
class Rig:
    """One test's fixture server: where it records effects and bytes, and how to reach it."""

    mode: str
    env: dict[str, str]
    effects: Path
    record_dir: Path

    def connect(self) -> AbstractAsyncContextManager[Client]:
        """Start the fixture server behind the tap and connect the SDK client to it."""
        return connect(
            fixture_command(self.effects), mode=self.mode, env=self.env, record_dir=self.record_dir
        )

    def effect_lines(self) -> list[dict[str, object]]:
        """The side effects the server has recorded so far."""
        if not self.effects.exists():
            return []
        return [json.loads(line) for line in self.effects.read_text(encoding="utf-8").splitlines()]

    @property
    def to_client(self) -> Path:
        """Every byte the client received."""
        return self.record_dir / "to_client.bin"

    @property
    def from_client(self) -> Path:
        """Every byte the client sent."""
        return self.record_dir / "from_client.bin"


@pytest.fixture(params=MODES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Rig:
    """A fixture server set-up for one client mode, with its own HOME, effects file and recording."""
    home = tmp_path / "home"
    home.mkdir()
    return Rig(
        mode=request.param,
        env=minimal_env(home),
        effects=tmp_path / "effects.jsonl",
        record_dir=tmp_path / "tap",
    )


def test_minimal_env_is_exactly_what_the_server_gets(tmp_path: Path) -> None:
    """The SDK's merge of its inherited variables under ``minimal_env`` adds nothing."""
    env = minimal_env(tmp_path, XDG_RUNTIME_DIR="/run/user/1000")
    params = server_params(["server"], env)
    assert set(env) == {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "XDG_RUNTIME_DIR"}
    assert get_default_environment() | (params.env or {}) == env
    assert env["HOME"] == str(tmp_path)


async def test_lists_tools_with_annotations_and_output_schemas(rig: Rig) -> None:
    """tools/list names every fixture tool with its hints, and output schemas only where declared."""
    async with rig.connect() as agent:
        tools = {tool.name: tool for tool in (await agent.list_tools()).tools}

    assert set(tools) == {
        "read_note",
        "delete_user",
        "transfer_funds",
        "get_forecast",
        "get_blob",
        "get_slow",
        "get_echo",
        "execute_sql",
    }
    hints = {name: tool.annotations for name, tool in tools.items()}
    destructive = {name for name, hint in hints.items() if hint is not None and hint.destructive_hint}
    read_only = {name for name, hint in hints.items() if hint is not None and hint.read_only_hint}
    assert destructive == {"delete_user", "transfer_funds", "execute_sql"}
    assert read_only == {"read_note", "get_forecast", "get_blob", "get_slow", "get_echo"}
    assert {name for name, tool in tools.items() if tool.output_schema is not None} == {
        "transfer_funds",
        "get_forecast",
    }


async def test_read_note_bytes_are_on_record_when_the_result_arrives(rig: Rig) -> None:
    """A result's bytes are in to_client.bin by the time the client has the result."""
    async with rig.connect() as agent:
        result = await agent.call_tool("read_note", {"name": "canary-7f3a"})
        assert not result.is_error
        assert tool_text(result) == "note:canary-7f3a"
        assert b'"note:canary-7f3a"' in rig.to_client.read_bytes()
    assert b'"canary-7f3a"' in rig.from_client.read_bytes()


async def test_delete_user_records_its_effect(rig: Rig) -> None:
    """delete_user answers and has written its effect line before the answer arrives."""
    async with rig.connect() as agent:
        result = await agent.call_tool("delete_user", {"id": 42})
        assert tool_text(result) == "deleted user 42"
        assert rig.effect_lines() == [{"tool": "delete_user", "id": 42}]


async def test_transfer_funds_returns_structured_content_and_records_its_effect(rig: Rig) -> None:
    """transfer_funds returns schema-valid structured content and records the transfer."""
    async with rig.connect() as agent:
        await agent.list_tools()
        result = await agent.call_tool("transfer_funds", {"amount": 12.5, "to": "acct-9"})
    assert not result.is_error
    assert result.structured_content == {"status": "sent", "amount": 12.5}
    assert rig.effect_lines() == [{"tool": "transfer_funds", "amount": 12.5, "to": "acct-9"}]


async def test_get_forecast_returns_structured_content(rig: Rig) -> None:
    """get_forecast's structured content arrives, mirrored as JSON text."""
    async with rig.connect() as agent:
        result = await agent.call_tool("get_forecast", {"city": "Oslo"})
    expected = {"city": "Oslo", "temperature_c": 21.5, "conditions": "sunny"}
    assert result.structured_content == expected
    assert json.loads(tool_text(result)) == expected


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("transfer_funds", {"amount": -1, "to": "acct-9"}), ("delete_user", {"id": -1})],
    ids=["with-output-schema", "without-output-schema"],
)
async def test_error_result_is_returned_not_raised(rig: Rig, tool: str, arguments: dict[str, object]) -> None:
    """An isError result comes back from call_tool (never raised), with or without an output schema."""
    async with rig.connect() as agent:
        await agent.list_tools()
        result = await agent.call_tool(tool, arguments)
    assert result.is_error is True
    assert result.structured_content is None
    assert tool_text(result).startswith(f"Error executing tool {tool}: ")
    assert rig.effect_lines() == []


async def test_ten_megabyte_result_arrives_whole(rig: Rig) -> None:
    """A 10 MB text result reaches the client complete, through the tap."""
    async with rig.connect() as agent:
        result = await agent.call_tool("get_blob", {"size": BLOB_SIZE})
    text = tool_text(result)
    assert len(text) == BLOB_SIZE
    assert text == "x" * BLOB_SIZE
    assert rig.to_client.stat().st_size > BLOB_SIZE


async def test_progress_notifications_reach_the_callback(rig: Rig) -> None:
    """Every progress notification of get_slow reaches the callback, and the wire keeps their order."""
    steps = 3
    seen: list[tuple[float, float | None, str | None]] = []
    all_seen = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if len(seen) == steps:
            all_seen.set()

    async with rig.connect() as agent:
        result = await agent.call_tool(
            "get_slow", {"seconds": 0.03, "steps": steps}, progress_callback=on_progress
        )
        # The SDK runs each callback in a task of its own, so one may still be pending when call_tool returns.
        with anyio.fail_after(PROGRESS_DEADLINE_SECONDS):
            await all_seen.wait()
    assert tool_text(result) == "slept 0.03s in 3 steps"
    assert sorted(seen) == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]
    received = recorded_messages(rig.to_client)
    progress = [m["params"] for m in received if m.get("method") == "notifications/progress"]
    assert [p["progress"] for p in progress] == [1, 2, 3]
    call = next(m for m in recorded_messages(rig.from_client) if m.get("method") == "tools/call")
    assert {p["progressToken"] for p in progress} == {call["params"]["_meta"]["progressToken"]}


async def test_get_echo_returns_exactly_the_arguments_sent(rig: Rig) -> None:
    """get_echo shows exactly which arguments arrived, nested values and non-ASCII included."""
    payload = {"b": [1, 2.5, None, True], "a": {"nested": "ünïcödé ✓"}, "empty": {}}
    async with rig.connect() as agent:
        result = await agent.call_tool("get_echo", {"payload": payload})
    assert tool_text(result) == json.dumps(payload, sort_keys=True)


async def test_client_opening_messages(rig: Rig) -> None:
    """Legacy opens with initialize, then initialized; auto opens with server/discover, never initialize."""
    async with rig.connect() as agent:
        await agent.list_tools()
    sent = recorded_messages(rig.from_client)
    methods = [message.get("method") for message in sent]
    if rig.mode == "legacy":
        assert methods[:3] == ["initialize", "notifications/initialized", "tools/list"]
        assert "_meta" not in sent[2].get("params", {})
    else:
        assert methods[:2] == ["server/discover", "tools/list"]
        assert "initialize" not in methods
        meta = sent[1]["params"]["_meta"]
        assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
        assert "io.modelcontextprotocol/clientCapabilities" in meta
