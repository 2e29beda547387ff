"""The approval flow end to end: the official SDK as the agent, the real shim, a real firewalld.

Every test runs in both protocol eras (``legacy``: initialize handshake; ``auto``: stateless
2026-07-28). The fixture server records side effects in a file, so "did it run" is read from disk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, effects_of, fixture_shim, write_config
from helpers.mcp_agent import MODES, connect, tool_text

pytestmark = pytest.mark.parametrize("mode", MODES)


def action_id_of(text: str) -> str:
    """The action id the paused result names."""
    payload = json.loads(text)
    assert payload["status"] == "PAUSED_FOR_APPROVAL"
    action_id: str = payload["action_id"]
    return action_id


def pending_by_id(daemon: Daemon, action_id: str) -> dict[str, Any]:
    """The console's view of one pending action."""
    (action,) = [a for a in daemon.pending() if a["action_id"] == action_id]
    return action


async def test_allowed_call_passes(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """A read-only call allowed by the default policy reaches the server and its answer comes back."""
    async with connect(fixture_shim(tmp_path / "fx"), mode=mode, env=daemon.env) as agent:
        result = await agent.call_tool("read_note", {"name": "groceries"})
    assert not result.is_error
    assert tool_text(result) == "note:groceries"
    decisions = [r for r in daemon.audit() if r["event"] == "decision"]
    assert decisions[0]["tool"] == "read_note" and decisions[0]["decision"] == "allow"


async def test_confirm_tool_is_listed_once(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """tools/list shows the server's tools plus exactly one firewall_confirm."""
    async with connect(fixture_shim(tmp_path / "fx"), mode=mode, env=daemon.env) as agent:
        names = [t.name for t in (await agent.list_tools()).tools]
    assert names.count("firewall_confirm") == 1
    assert {"read_note", "delete_user", "transfer_funds"} <= set(names)


async def test_dangerous_call_pauses_and_code_never_reaches_agent(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """delete_user is paused, does not run, and its code is on the console but in no byte the agent got."""
    effects, record = tmp_path / "fx", tmp_path / "rec"
    record.mkdir()
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env, record_dir=record) as agent:
        await agent.list_tools()
        result = await agent.call_tool("delete_user", {"id": 42})
        assert result.is_error
        action_id = action_id_of(tool_text(result))
        assert effects_of(effects) == []
        action = pending_by_id(daemon, action_id)
    assert action["tool"] == "delete_user"
    assert action["arguments"] == {"id": 42}
    assert re.fullmatch(r"\d{6}", action["code"])
    received = (record / "to_client.bin").read_bytes()
    assert action_id.encode() in received  # the recording is the real stream...
    assert action["code"].encode() not in received  # ...and the code is not in it


async def test_confirm_runs_frozen_arguments_exactly_once(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """The confirmed call runs once, with the intercepted arguments, whatever the confirm adds."""
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent:
        await agent.list_tools()
        action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 42})))
        code = pending_by_id(daemon, action_id)["code"]
        # The agent tries to slip in other arguments with the code: they must be ignored.
        confirmed = await agent.call_tool("firewall_confirm", {"otp": code, "id": 7, "arguments": {"id": 7}})
        assert not confirmed.is_error, tool_text(confirmed)
        assert tool_text(confirmed) == "deleted user 42"
        again = await agent.call_tool("firewall_confirm", {"otp": code})
    assert again.is_error
    assert "already used" in tool_text(again)
    assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]
    events = [r["event"] for r in daemon.audit() if r["action_id"] == action_id]
    assert {"paused", "confirm_ok", "outcome"} <= set(events)


async def test_paused_tool_with_output_schema_is_a_clean_error(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """A paused tool that declares an outputSchema is answered with isError, which the SDK accepts."""
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent:
        await agent.list_tools()
        result = await agent.call_tool("transfer_funds", {"amount": 12.5, "to": "bob"})
        assert result.is_error and result.structured_content is None
        code = pending_by_id(daemon, action_id_of(tool_text(result)))["code"]
        confirmed = await agent.call_tool("firewall_confirm", {"otp": code})
    assert not confirmed.is_error
    assert confirmed.structured_content == {"status": "sent", "amount": 12.5}
    assert effects_of(effects) == [{"amount": 12.5, "to": "bob", "tool": "transfer_funds"}]


async def test_wrong_code_fails_and_is_counted(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """A wrong code is refused, costs an attempt, and runs nothing."""
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent:
        action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 1})))
        before = pending_by_id(daemon, action_id)
        wrong = str((int(before["code"]) + 1) % 10**6).zfill(6)
        result = await agent.call_tool("firewall_confirm", {"otp": wrong})
        assert result.is_error
        assert "does not match" in tool_text(result)
        after = pending_by_id(daemon, action_id)
    assert after["attempts_left"] == before["attempts_left"] - 1
    assert effects_of(effects) == []


async def test_denied_action_cannot_be_confirmed(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """After the user denies an action in the console, its code no longer works."""
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent:
        action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 5})))
        code = pending_by_id(daemon, action_id)["code"]
        assert action_id in daemon.console("deny", action_id).stdout
        result = await agent.call_tool("firewall_confirm", {"otp": code})
    assert result.is_error
    assert "denied" in tool_text(result)
    assert effects_of(effects) == []
    assert daemon.pending() == []


async def test_expired_code_fails(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """A code past its deadline approves nothing; the action leaves the console's list."""
    effects = tmp_path / "fx"
    config = write_config(
        tmp_path / "policy.json", {"global": {"default_action": "block", "otp_ttl_seconds": 1}}
    )
    async with connect(fixture_shim(effects, config=config), mode=mode, env=daemon.env) as agent:
        action_id = action_id_of(tool_text(await agent.call_tool("delete_user", {"id": 9})))
        code = pending_by_id(daemon, action_id)["code"]
        await _until(lambda: not daemon.pending())
        result = await agent.call_tool("firewall_confirm", {"otp": code})
    assert result.is_error
    assert "expired" in tool_text(result)
    assert effects_of(effects) == []


async def test_code_from_another_session_fails(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """A code shown for one chat's action approves nothing in another chat, and spends nothing there."""
    fx_a, fx_b = tmp_path / "a", tmp_path / "b"
    async with (
        connect(fixture_shim(fx_a), mode=mode, env=daemon.env) as agent_a,
        connect(fixture_shim(fx_b), mode=mode, env=daemon.env) as agent_b,
    ):
        action_id = action_id_of(tool_text(await agent_a.call_tool("delete_user", {"id": 3})))
        action = pending_by_id(daemon, action_id)
        stolen = await agent_b.call_tool("firewall_confirm", {"otp": action["code"]})
        assert stolen.is_error
        assert pending_by_id(daemon, action_id)["attempts_left"] == action["attempts_left"]
        own = await agent_a.call_tool("firewall_confirm", {"otp": action["code"]})
        assert not own.is_error
    assert effects_of(fx_a) == [{"id": 3, "tool": "delete_user"}]
    assert effects_of(fx_b) == []


async def test_daemon_down_fails_closed(mode: str, home: Path, tmp_path: Path) -> None:
    """With no daemon (and no auto-start) calls are refused with a clear error; listing still works."""
    effects = tmp_path / "fx"
    env = Daemon(home).env
    command = fixture_shim(effects, extra=("--decision-timeout", "0.5"))
    async with connect(command, mode=mode, env=env) as agent:
        names = [t.name for t in (await agent.list_tools()).tools]
        result = await agent.call_tool("read_note", {"name": "x"})
        blocked = await agent.call_tool("delete_user", {"id": 1})
    assert "read_note" in names
    assert result.is_error and "firewalld" in tool_text(result)
    assert blocked.is_error
    assert effects_of(effects) == []


async def test_ten_megabyte_result_passes(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """A 10 MB tool result arrives whole through the shim."""
    async with connect(fixture_shim(tmp_path / "fx"), mode=mode, env=daemon.env) as agent:
        result = await agent.call_tool("get_blob", {"size": 10_000_000})
    assert not result.is_error
    assert len(tool_text(result)) == 10_000_000


async def test_ten_megabyte_arguments_are_judged_and_frozen(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """A paused call with 10 MB of arguments is shown in full on the console and replayed exactly."""
    config = write_config(
        tmp_path / "policy.json",
        {"global": {"allow_prefixes": [], "block_keywords": ["echo"], "default_action": "allow"}},
    )
    payload = {"blob": "x" * 10_000_000, "unicode": "naïve \u2028 😀"}
    async with connect(fixture_shim(tmp_path / "fx", config=config), mode=mode, env=daemon.env) as agent:
        paused = await agent.call_tool("get_echo", {"payload": payload})
        action = pending_by_id(daemon, action_id_of(tool_text(paused)))
        assert action["arguments_cut"] and action["arguments"] is None  # listings stay small...
        shown = json.loads(daemon.console("show", action["action_id"], "--json").stdout)
        assert shown["arguments"] == {"payload": payload}  # ...and the whole is one request away
        assert shown["arguments_sha256"] == action["arguments_sha256"]
        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert json.loads(tool_text(confirmed)) == payload


async def _until(predicate: Any, limit: float = 15.0) -> None:
    """Wait for a condition the daemon makes true by itself (a deadline passing), or fail."""
    import anyio

    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the condition is in another process; there is no event
            await anyio.sleep(0.2)


async def test_code_as_typed_by_a_human_or_sent_as_a_number(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """Full-width digits, spaces and a JSON number (which drops leading zeros) all name the same code."""
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent:
        await agent.call_tool("delete_user", {"id": 1})
        code = daemon.pending()[0]["code"]
        fullwidth = " ".join(chr(0xFF10 + int(c)) for c in code)
        first = await agent.call_tool("firewall_confirm", {"otp": fullwidth})
        await agent.call_tool("delete_user", {"id": 2})
        code = daemon.pending()[0]["code"]
        second = await agent.call_tool("firewall_confirm", {"otp": int(code)})
    assert not first.is_error and not second.is_error
    assert effects_of(effects) == [{"id": 1, "tool": "delete_user"}, {"id": 2, "tool": "delete_user"}]
