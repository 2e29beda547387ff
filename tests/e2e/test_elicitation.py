"""Approval through the MCP client's own dialog (elicitation), opt-in per server and client.

The official SDK client is the agent, with its elicitation callback as the human's dialog, in both
eras: legacy (the shim sends ``elicitation/create`` while it holds the call open) and 2026-07-28
(the call is answered ``input_required`` and the client's retry carries the answer). The policy
key ``approve_via_elicitation`` is off by default; without it, or without the client's declared
capability, nothing is asked and the call is paused as before. A raw shim connection shows that
the daemon takes an answer only for a session whose server section has the key.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult, ErrorData, Implementation

from conftest import Daemon, effects_of, fixture_shim, wait_until, write_config
from daemon import protocol as p
from helpers.mcp_agent import MODES, connect, tool_text

HOLD = ("--hold", "30")
#: The SDK client names itself "mcp" unless told otherwise.
SDK_CLIENT = "mcp"


def policy(tmp_path: Path, via: object = None, server: str = "fx") -> Path:
    section: dict[str, Any] = {} if via is None else {"approve_via_elicitation": via}
    config = {
        "global": {"allow_prefixes": ["read_"], "block_keywords": ["delete"], "default_action": "approve"},
        "servers": {server: section},
    }
    return write_config(tmp_path / "policy.json", config)


class Dialog:
    """The human at the client's dialog: answers with ``choice``, and notes what it was shown."""

    def __init__(self, daemon: Daemon, choice: str = "accept") -> None:
        self.daemon = daemon
        self.choice = choice
        self.messages: list[str] = []
        self.codes: list[str] = []  # the codes the console showed while the dialog was open

    async def __call__(self, context: Any, params: Any) -> ElicitResult | ErrorData:
        self.messages.append(params.message)
        pending = await anyio.to_thread.run_sync(self.daemon.pending)
        self.codes += [a["code"] for a in pending]
        if self.choice == "error":
            return ErrorData(code=-32603, message="the dialog failed")
        return ElicitResult(action=self.choice)


def events(daemon: Daemon, action_id: str) -> list[tuple[str, str]]:
    return [(r["event"], r["detail"] or "") for r in reversed(daemon.audit()) if r["action_id"] == action_id]


def agent_bytes(record: Path) -> bytes:
    return (record / "to_client.bin").read_bytes()


@pytest.mark.parametrize("mode", MODES)
async def test_accepted_dialog_runs_the_frozen_call(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    """Accept in the client's dialog: the frozen call runs once and the agent's call gets its result."""
    effects, record = tmp_path / "fx", tmp_path / "tap"
    dialog = Dialog(daemon)
    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(
        command, mode=mode, env=daemon.env, record_dir=record, elicitation_callback=dialog
    ) as agent:
        result = await agent.call_tool("delete_user", {"id": 42})
        assert daemon.pending() == []  # closed as approved (not withdrawn as the chat ends)
    assert not result.is_error, tool_text(result)
    assert tool_text(result) == "deleted user 42"
    assert effects_of(effects) == [{"id": 42, "tool": "delete_user"}]
    (message,) = dialog.messages
    assert '"delete_user"' in message and '"id": 42' in message
    (code,) = dialog.codes
    assert code.encode() not in agent_bytes(record)  # the dialog and every answer hold no code
    (row,) = [r for r in daemon.audit() if r["event"] == "confirm_ok"]
    assert row["detail"] == "approved in the client's own dialog (elicitation)"
    sent = [json.loads(line) for line in agent_bytes(record).splitlines()]
    if mode == "legacy":  # the original request id got the real result
        (call,) = [
            json.loads(line)
            for line in (record / "from_client.bin").read_bytes().splitlines()
            if b'"tools/call"' in line
        ]
        (answer,) = [m for m in sent if m.get("id") == call["id"]]
        assert answer["result"]["content"][0]["text"] == "deleted user 42"
        (ask,) = [m for m in sent if m.get("method") == "elicitation/create"]
        assert ask["id"].startswith("mcp-action-firewall/ask/")
    else:
        (first,) = [m for m in sent if m.get("result", {}).get("resultType") == "input_required"]
        assert first["result"]["requestState"].startswith("mcp-action-firewall/elicit/")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("choice", ["decline", "cancel"])
async def test_declined_dialog_is_refused_and_audited(
    mode: str, choice: str, daemon: Daemon, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    dialog = Dialog(daemon, choice)
    # Only the listed clients (by clientInfo.name, in any case) get the dialog.
    command = fixture_shim(effects, config=policy(tmp_path, ["other", "desk client"]), name="fx", extra=HOLD)
    me = Implementation(name="Desk Client", version="2.0")
    async with connect(
        command, mode=mode, env=daemon.env, elicitation_callback=dialog, client_info=me
    ) as agent:
        result = await agent.call_tool("delete_user", {"id": 5})
        after = await agent.call_tool("read_note", {"name": "still"})
        assert daemon.pending() == []  # denied (not withdrawn as the chat ends)
    assert len(dialog.messages) == 1
    assert result.is_error and "declined" in tool_text(result) and "did not run" in tool_text(result)
    assert tool_text(after) == "note:still"
    assert effects_of(effects) == []
    (denied,) = [r for r in daemon.audit() if r["event"] == "denied"]
    assert denied["detail"] == "declined in the client's own dialog (elicitation)"
    assert not [r for r in daemon.audit() if r["event"] == "confirm_ok"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("via", [None, False, ["some-other-client"]])
async def test_no_dialog_unless_the_policy_allows_it(
    mode: str, via: object, daemon: Daemon, tmp_path: Path
) -> None:
    """Off by default (and for other clients): no dialog is asked at all; the call is paused as today."""
    effects, record = tmp_path / "fx", tmp_path / "tap"
    dialog = Dialog(daemon)
    command = fixture_shim(effects, config=policy(tmp_path, via), name="fx", extra=HOLD)
    async with connect(
        command, mode=mode, env=daemon.env, record_dir=record, elicitation_callback=dialog
    ) as agent:
        with anyio.fail_after(20):  # a hold would take 30 s: nobody can approve in place
            paused = await agent.call_tool("delete_user", {"id": 1})
    assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
    assert dialog.messages == []
    assert b"elicitation/create" not in agent_bytes(record)
    assert effects_of(effects) == []


@pytest.mark.parametrize("mode", MODES)
async def test_no_dialog_for_a_client_without_elicitation(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    effects, record = tmp_path / "fx", tmp_path / "tap"
    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(command, mode=mode, env=daemon.env, record_dir=record) as agent:
        with anyio.fail_after(20):
            paused = await agent.call_tool("delete_user", {"id": 1})
    assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
    assert b"elicitation/create" not in agent_bytes(record)


async def test_a_failed_dialog_falls_back_to_the_code(daemon: Daemon, tmp_path: Path) -> None:
    """The client answers the dialog with an error: the agent is told the call is paused, and the
    code works as always."""
    effects = tmp_path / "fx"
    dialog = Dialog(daemon, "error")
    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(command, mode="legacy", env=daemon.env, elicitation_callback=dialog) as agent:
        paused = await agent.call_tool("delete_user", {"id": 8})
        assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
        assert effects_of(effects) == []
        (action,) = daemon.pending()
        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert tool_text(confirmed) == "deleted user 8"
    assert effects_of(effects) == [{"id": 8, "tool": "delete_user"}]


async def test_a_failed_dialog_in_the_stateless_era_runs_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """The SDK raises the dialog's error instead of retrying: nothing runs, the action waits."""
    effects = tmp_path / "fx"
    dialog = Dialog(daemon, "error")
    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(command, mode="auto", env=daemon.env, elicitation_callback=dialog) as agent:
        with pytest.raises(MCPError, match="the dialog failed"):
            await agent.call_tool("delete_user", {"id": 8})
        assert tool_text(await agent.call_tool("read_note", {"name": "z"})) == "note:z"
        assert [a["tool"] for a in daemon.pending()] == ["delete_user"]  # (withdrawn when the chat ends)
    assert effects_of(effects) == []


async def test_an_unanswered_dialog_falls_back_to_paused(daemon: Daemon, tmp_path: Path) -> None:
    """No answer within the hold: PAUSED, and a late accept approves nothing."""
    effects = tmp_path / "fx"
    answered = anyio.Event()

    async def slow(context: Any, params: Any) -> ElicitResult:
        try:
            await anyio.sleep(4)  # the hold is 1 s
            return ElicitResult(action="accept")
        finally:
            answered.set()

    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=("--hold", "1"))
    async with connect(command, mode="legacy", env=daemon.env, elicitation_callback=slow) as agent:
        paused = await agent.call_tool("delete_user", {"id": 9})
        assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
        with anyio.fail_after(10):
            await answered.wait()
        after = await agent.call_tool("read_note", {"name": "x"})  # the shim has read the late answer
        assert tool_text(after) == "note:x"
        (action,) = daemon.pending()
        assert effects_of(effects) == []
        confirmed = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert tool_text(confirmed) == "deleted user 9"
    assert effects_of(effects) == [{"id": 9, "tool": "delete_user"}]


async def test_console_approval_racing_the_dialog_runs_the_call_once(daemon: Daemon, tmp_path: Path) -> None:
    """The human approves in the console while the dialog is open, then accepts it too: one run."""
    effects = tmp_path / "fx"

    async def both(context: Any, params: Any) -> ElicitResult:
        (action,) = await anyio.to_thread.run_sync(daemon.pending)
        await anyio.to_thread.run_sync(daemon.console, "approve", action["action_id"])
        return ElicitResult(action="accept")

    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(command, mode="legacy", env=daemon.env, elicitation_callback=both) as agent:
        result = await agent.call_tool("delete_user", {"id": 11})
        after = await agent.call_tool("read_note", {"name": "y"})
    assert tool_text(result) == "deleted user 11"
    assert tool_text(after) == "note:y"
    assert effects_of(effects) == [{"id": 11, "tool": "delete_user"}]
    approvals = [r["detail"] for r in daemon.audit() if r["event"] == "confirm_ok"]
    assert approvals == ["approved in the console"]


async def test_unreadable_arguments_are_escaped_in_the_dialog(daemon: Daemon, tmp_path: Path) -> None:
    """Terminal escapes and invisible or right-to-left characters reach the dialog as escapes."""
    effects = tmp_path / "fx"
    dialog = Dialog(daemon, "decline")
    command = fixture_shim(effects, config=policy(tmp_path, True), name="fx", extra=HOLD)
    async with connect(command, mode="legacy", env=daemon.env, elicitation_callback=dialog) as agent:
        await agent.call_tool("delete_user\u202e", {"id": 1, "note": "\x1b[2J\u200bhidden"})
    (message,) = dialog.messages
    assert all(ch == "\n" or " " <= ch <= "~" for ch in message)
    assert "\\u202e" in message and "\\u001b[2J" in message and "\\u200b" in message


# -- the daemon decides: a raw shim connection ------------------------------------------------


def _shim(daemon: Daemon, config: Path, server: str) -> tuple[socket.socket, p.FrameDecoder]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.socket)
    hello = p.Hello(
        role=p.ROLE_SHIM, server_name=server, config_path=str(config), target=["t"], cwd="/", pid=os.getpid()
    )
    sock.sendall(p.encode(hello) + p.encode(p.ClientInfo(SDK_CLIENT, "1", "2025-11-25")))
    decoder = p.FrameDecoder()
    assert isinstance(_read(sock, decoder), p.Welcome)
    return sock, decoder


def _read(sock: socket.socket, decoder: p.FrameDecoder) -> p.Message:
    out: list[p.Message] = []
    while not out:
        data = sock.recv(1 << 16)
        assert data, "firewalld closed the connection"
        out += decoder.feed(data)
    (message,) = out
    return message


def _ask(sock: socket.socket, decoder: p.FrameDecoder, message: p.Message) -> p.Message:
    sock.sendall(p.encode(message))
    return _read(sock, decoder)


def test_a_shim_without_the_opt_in_cannot_approve_by_dialog(daemon: Daemon, tmp_path: Path) -> None:
    """The wire message approves nothing for a server without the key, nor another chat's action."""
    config = write_config(
        tmp_path / "policy.json",
        {
            "global": {"block_keywords": ["delete"]},
            "servers": {"on": {"approve_via_elicitation": True}, "off": {}},
        },
    )
    params = b'{"name":"delete_user","arguments":{"id":1}}'
    off, off_dec = _shim(daemon, config, "off")
    on, on_dec = _shim(daemon, config, "on")
    try:
        mine = _ask(off, off_dec, p.Decide(1, params))
        assert isinstance(mine, p.Verdict) and mine.action == p.APPROVE and not mine.elicit
        refused = _ask(off, off_dec, p.ElicitationAnswer(2, mine.action_id, True))
        assert isinstance(refused, p.Error) and refused.code == p.E_FORBIDDEN
        declined = _ask(off, off_dec, p.ElicitationAnswer(3, mine.action_id, False))
        assert isinstance(declined, p.Error)

        theirs = _ask(on, on_dec, p.Decide(1, params))
        assert isinstance(theirs, p.Verdict) and theirs.elicit
        stolen = _ask(off, off_dec, p.ElicitationAnswer(4, theirs.action_id, True))
        assert isinstance(stolen, p.Error) and stolen.code == p.E_NOT_FOUND

        assert {a["action_id"] for a in daemon.pending()} == {mine.action_id, theirs.action_id}
        refusals = [r for r in daemon.audit() if r["event"] == "elicitation_refused"]
        assert len(refusals) == 3
        assert not [r for r in daemon.audit() if r["event"] in ("confirm_ok", "denied")]

        taken = _ask(on, on_dec, p.ElicitationAnswer(2, theirs.action_id, True))
        assert isinstance(taken, p.Confirmed) and taken.ok and taken.params == params
        again = _ask(on, on_dec, p.ElicitationAnswer(3, theirs.action_id, True))
        assert isinstance(again, p.Error)  # once
    finally:
        off.close()
        on.close()
    wait_until(lambda: [a["action_id"] for a in daemon.pending()] == [mine.action_id], what="the approval")
