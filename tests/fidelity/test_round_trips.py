"""Multi-round-trip calls (2026-07-28 ``input_required``) and task-augmented calls, through the real shim.

The scripted server answers ``ask`` with ``input_required`` until it is retried with ``inputResponses``.
An allowed call's retry is simply judged again. An approved call's retry must run exactly the approved
tool and arguments: the shim hands the agent a continuation token in place of the server's
``requestState``, and a retry that brings it back runs the frozen call. The input the retry adds
(``inputResponses``) is judged and shown to the human like any other argument before it is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import Daemon, shim_command
from helpers.fidelity import effects, recorded, scripted_command
from helpers.wire import Peer, call, initialize

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
ANSWER = {"sure": {"action": "accept", "content": {}}}


def meta(**extra: Any) -> dict[str, Any]:
    """A stateless request's ``_meta``."""
    return {VERSION_KEY: "2026-07-28", **extra}


def text_of(response: dict[str, Any]) -> str:
    """The text of a tools/call result."""
    return str(response["result"]["content"][0]["text"])


def confirm(daemon: Daemon, peer: Peer, msg_id: int, paused: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Read the paused action's code from the console and send firewall_confirm with it."""
    action_id = json.loads(text_of(paused))["action_id"]
    (action,) = [a for a in daemon.pending() if a["action_id"] == action_id]
    return peer.ask(call(msg_id, "firewall_confirm", {"otp": action["code"]}, **params))


def shim_peer(tmp_path: Path, daemon: Daemon, policy: Path) -> tuple[Peer, Path, Path]:
    """The scripted server behind the shim."""
    record, fx = tmp_path / "record", tmp_path / "fx"
    return Peer(shim_command(scripted_command(record, fx), config=policy), daemon.env), record, fx


def test_allowed_call_retry_is_judged_and_passes(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """An allowed call's input_required answer passes untouched; the retry (new id) is judged and runs."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, permissive)
    with peer:
        first = peer.ask(call(1, "ask", {"n": 1}, _meta=meta()))
        assert first["result"]["resultType"] == "input_required"
        assert first["result"]["requestState"] == "srv-state-1"
        retry = call(2, "ask", {"n": 1}, _meta=meta(), inputResponses=ANSWER, requestState="srv-state-1")
        done = peer.ask(retry)
        peer.close()
    assert json.loads(text_of(done))["requestState"] == "srv-state-1"
    assert effects(fx) == [
        {"tool": "ask", "arguments": {"n": 1}, "inputResponses": ANSWER, "requestState": "srv-state-1"}
    ]
    assert json.loads(recorded(record)[1]) == retry


def test_approved_call_continues_without_a_second_approval(
    tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """Paused, approved, input_required, retried: the retry runs the approved tool and arguments, and
    the input it adds is shown to the human and approved like any other argument before it is sent."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, guarded)
    with peer:
        paused = peer.ask(call(1, "ask", {"n": 42}, _meta=meta()))
        assert "PAUSED_FOR_APPROVAL" in text_of(paused)
        first = confirm(fdaemon, peer, 2, paused, _meta=meta())
        token = first["result"]["requestState"]
        assert first["result"]["resultType"] == "input_required"
        assert token.startswith("mcp-action-firewall/continue/") and "srv-state-1" not in token
        assert first["result"]["inputRequests"]["sure"]["method"] == "elicitation/create"
        # The retry (as the SDK sends it: same tool, same arguments, new id) tries to change the arguments.
        retry = call(3, "firewall_confirm", {"otp": "000000", "n": 666}, _meta=meta(), inputResponses=ANSWER)
        retry["params"]["requestState"] = token
        again = peer.ask(retry)
        assert "PAUSED_FOR_APPROVAL" in text_of(again), text_of(again)
        assert len(recorded(record)) == 1  # nothing the human has not seen reached the server
        (shown,) = fdaemon.pending()
        assert shown["arguments"] == {"n": 42, "inputResponses": ANSWER}
        done = confirm(fdaemon, peer, 4, again, _meta=meta())
        replayed = peer.ask(call(5, "firewall_confirm", {"otp": "0"}, _meta=meta(), requestState=token))
        peer.close()
    assert json.loads(text_of(done)) == {
        "arguments": {"n": 42},
        "inputResponses": ANSWER,
        "requestState": "srv-state-1",
    }
    assert effects(fx) == [
        {"tool": "ask", "arguments": {"n": 42}, "inputResponses": ANSWER, "requestState": "srv-state-1"}
    ]
    assert replayed["result"]["isError"] is True and "nothing was run" in text_of(replayed)
    sent = [json.loads(line) for line in recorded(record)]
    assert [m["params"]["name"] for m in sent] == ["ask", "ask"]
    assert all(m["params"]["arguments"] == {"n": 42} for m in sent)
    for answer in (paused, again):
        action_id = json.loads(text_of(answer))["action_id"]
        events = [r["event"] for r in fdaemon.audit() if r["action_id"] == action_id]
        assert events.count("confirm_ok") == 1


def test_retry_without_new_input_continues_the_approval(
    tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """A retry that adds no input the human has not seen continues the approved call, asked once."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, guarded)
    with peer:
        paused = peer.ask(call(1, "ask", {"n": 7}, _meta=meta()))
        first = confirm(fdaemon, peer, 2, paused, _meta=meta())
        token = first["result"]["requestState"]
        again = peer.ask(call(3, "firewall_confirm", {}, _meta=meta(), requestState=token))
        peer.close()
    assert again["result"]["resultType"] == "input_required"
    assert fdaemon.pending() == []
    sent = [json.loads(line) for line in recorded(record)]
    assert [m["params"]["arguments"] for m in sent] == [{"n": 7}, {"n": 7}]
    assert sent[1]["params"]["requestState"] == "srv-state-1"
    assert effects(fx) == []


def test_continuation_without_server_state(tmp_path: Path, fdaemon: Daemon, guarded: Path) -> None:
    """A server that sends input requests but no requestState gets a retry without one."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, guarded)
    with peer:
        paused = peer.ask(call(1, "ask_nostate", {"k": "v"}, _meta=meta()))
        first = confirm(fdaemon, peer, 2, paused, _meta=meta())
        token = first["result"]["requestState"]
        again = peer.ask(
            call(3, "firewall_confirm", {}, _meta=meta(), inputResponses=ANSWER, requestState=token)
        )
        done = confirm(fdaemon, peer, 4, again, _meta=meta())
        peer.close()
    assert json.loads(text_of(done))["requestState"] is None
    assert "requestState" not in json.loads(recorded(record)[1])["params"]
    assert effects(fx)[0]["arguments"] == {"k": "v"}


def test_forged_continuation_runs_nothing(tmp_path: Path, fdaemon: Daemon, guarded: Path) -> None:
    """A made-up continuation token is refused without asking the daemon or the server."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, guarded)
    with peer:
        forged = "mcp-action-firewall/continue/" + "0" * 32
        refused = peer.ask(call(1, "firewall_confirm", {"otp": "1"}, _meta=meta(), requestState=forged))
        peer.close()
    assert refused["result"]["isError"] is True
    assert recorded(record) == [] and effects(fx) == []


def test_task_call_is_decided_before_any_work(tmp_path: Path, fdaemon: Daemon, guarded: Path) -> None:
    """A task-augmented call that needs approval creates no task; once approved, the task is created."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, guarded)
    with peer:
        peer.ask(initialize(0))
        paused = peer.ask(call(1, "task", {"job": 7}, task={"ttl": 60000}))
        assert "PAUSED_FOR_APPROVAL" in text_of(paused)
        assert recorded(record)[1:] == [] and effects(fx) == []
        created = confirm(fdaemon, peer, 2, paused)
        status = peer.ask({"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"taskId": "t-1"}})
        result = peer.ask({"jsonrpc": "2.0", "id": 4, "method": "tasks/result", "params": {"taskId": "t-1"}})
        peer.close()
    assert created["result"]["task"]["taskId"] == "t-1"
    assert status["result"]["status"] == "completed"
    assert text_of(result) == "task done"
    assert effects(fx) == [{"tool": "task", "arguments": {"job": 7}, "task": {"ttl": 60000}}]


def test_allowed_task_call_passes(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """An allowed task-augmented call is forwarded with its task parameters, and the task flow passes."""
    peer, record, fx = shim_peer(tmp_path, fdaemon, permissive)
    with peer:
        peer.ask(initialize(0))
        created = peer.ask(call(1, "task", {"job": 1}, task={"ttl": 1000}))
        peer.close()
    assert created["result"]["task"]["status"] == "working"
    assert json.loads(recorded(record)[1])["params"]["task"] == {"ttl": 1000}
