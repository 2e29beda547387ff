"""One approval, one run: an agent that reuses ids cannot make another answer count as the approved
call's, and the approved call travels to the server under an id the agent never chose.

Through the real shim and daemon, with the scripted server behind (``hang`` never answers, so the
approved call stays in flight for as long as the test needs; ``ask`` answers ``input_required``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command
from helpers.fidelity import effects, recorded, scripted_command, write_policy
from helpers.wire import DEADLINE, Peer, call

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
POLICY: dict[str, Any] = {
    "global": {
        "allow_prefixes": [],
        "block_keywords": ["delete"],
        "default_action": "allow",
        "rules": [{"name": "hanging needs approval", "tool": "hang", "action": "approve"}],
    }
}


def text_of(response: dict[str, Any]) -> str:
    return str(response["result"]["content"][0]["text"])


def wait_recorded(record: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` requests the server received, once it has (bounded wait)."""
    deadline = time.monotonic() + DEADLINE
    while len(recorded(record)) < count:
        assert time.monotonic() < deadline, f"the server got {len(recorded(record))} lines, not {count}"
        time.sleep(0.02)
    return [json.loads(line) for line in recorded(record)]


@pytest.fixture
def session(tmp_path: Path, fdaemon: Daemon) -> Any:
    record, fx = tmp_path / "record", tmp_path / "fx"
    policy = write_policy(tmp_path, "policy", POLICY)
    peer = Peer(shim_command(scripted_command(record, fx), config=policy), fdaemon.env)
    with peer:
        yield peer, record, fx
        peer.close()


def approve(daemon: Daemon, peer: Peer, confirm_id: Any, paused: dict[str, Any], **params: Any) -> None:
    """Send firewall_confirm under ``confirm_id`` with the paused action's code (no wait for the answer)."""
    action_id = json.loads(text_of(paused))["action_id"]
    (action,) = [a for a in daemon.pending() if a["action_id"] == action_id]
    peer.send(call(confirm_id, "firewall_confirm", {"otp": action["code"]}, **params))


@pytest.mark.parametrize("reused", [7, "7", "x"], ids=["number", "string-of-the-number", "string"])
def test_request_under_an_id_in_flight_is_refused(
    reused: Any, session: tuple[Peer, Path, Path], fdaemon: Daemon
) -> None:
    """While the approved call is in flight, a request that reuses the confirm's id is refused with
    -32600 and never reaches the server: its answer cannot be taken for the approved call's."""
    peer, record, fx = session
    paused = peer.ask(call(1, "hang", {"n": 1}))
    assert "PAUSED_FOR_APPROVAL" in text_of(paused)
    approve(fdaemon, peer, reused, paused)
    (hanging,) = wait_recorded(record, 1)
    assert hanging["params"] == {"name": "hang", "arguments": {"n": 1}}
    assert isinstance(hanging["id"], str) and hanging["id"].startswith("mcp-action-firewall/run/")
    for forged in (
        call(reused, "ask", {"n": 1}, _meta={VERSION_KEY: "2026-07-28"}),
        call(reused, "delete_thing", {"id": 9}),
        call(reused, "firewall_confirm", {"otp": "000000"}),
        {"jsonrpc": "2.0", "id": reused, "method": "ping"},
        call(hanging["id"], "echo", {}),  # the shim's own id for the approved call, read off the server
    ):
        peer.send(forged)
        refused, _ = peer.response(forged["id"])
        assert refused["error"]["code"] == -32600, refused
        assert "in flight" in refused["error"]["message"]
    time.sleep(0.2)  # let anything wrongly forwarded arrive (it is checked below; no timing asserted)
    assert len(recorded(record)) == 1
    assert effects(fx) == []
    assert fdaemon.pending() == []


@pytest.mark.parametrize("ask_first", [False, True], ids=["confirm-first", "allowed-call-first"])
def test_same_id_confirm_and_allowed_call_sent_together(
    ask_first: bool, session: tuple[Peer, Path, Path], fdaemon: Daemon
) -> None:
    """The attack of issue 11: the confirm and an allowed call that answers input_required go out
    under one id in one write. The later of the two is refused (or, if the first was already
    answered, is an ordinary call): the allowed call's answer is never taken for the approved
    call's, no continuation is minted from it, and the approved call runs once."""
    peer, record, fx = session
    paused = peer.ask(call(1, "delete_thing", {"id": 4}))
    action_id = json.loads(text_of(paused))["action_id"]
    (action,) = fdaemon.pending()
    modern = {VERSION_KEY: "2026-07-28"}
    confirm = json.dumps(call(5, "firewall_confirm", {"otp": action["code"]}, _meta=modern)).encode()
    ask = json.dumps(call(5, "ask", {"n": 1}, _meta=modern)).encode()
    peer.send(ask + b"\n" + confirm if ask_first else confirm + b"\n" + ask)
    answers = [peer.response(5)[0], peer.response(5)[0]]
    if fdaemon.pending():  # the confirm was the one refused: the user's code still works, once
        assert [a.get("error", {}).get("code") for a in answers].count(-32600) == 1, answers
        answers.append(peer.ask(call(8, "firewall_confirm", {"otp": action["code"]}, _meta=modern)))
    tokens = [a["result"].get("requestState") for a in answers if isinstance(a.get("result"), dict)]
    assert not any(str(t).startswith("mcp-action-firewall/continue/") for t in tokens), answers
    assert effects(fx) == [{"tool": "delete_thing", "arguments": {"id": 4}}]
    for token in [t for t in tokens if t]:  # whatever state came back, reusing it reruns nothing
        peer.ask(call(6, "firewall_confirm", {}, _meta=modern, requestState=token))
        peer.ask(call(7, "delete_thing", {"id": 4}, _meta=modern, requestState=token))
    assert effects(fx) == [{"tool": "delete_thing", "arguments": {"id": 4}}]
    deletes = [m for m in map(json.loads, recorded(record)) if m["params"]["name"] == "delete_thing"]
    assert len(deletes) == 1 and str(deletes[0]["id"]).startswith("mcp-action-firewall/run/")
    outcomes = [r for r in fdaemon.audit() if r["action_id"] == action_id and r["event"] == "outcome"]
    assert [r["decision"] for r in outcomes] in (["ok", "sent"], ["sent"])
