"""Edge cases of the shim's message handling, in memory: each one is a way to wedge it or slip past it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon import protocol as p
from helpers.fuzzing import FakeDaemon, Pipe
from shim import jsonrpc as rpc
from shim.confirm import RUN_ID_PREFIX
from shim.firewall import CONFIRM_TOOL, CONTINUATION_PREFIX, Firewall


@pytest.fixture
def rig() -> tuple[Firewall, Pipe, Pipe, FakeDaemon]:
    """A Firewall with list-backed pipes and a fake daemon."""
    client, target, daemon = Pipe(), Pipe(), FakeDaemon()
    return Firewall(client, target, daemon), client, target, daemon


def line(obj: Any) -> bytes:
    """Compact JSON."""
    return json.dumps(obj, separators=(",", ":")).encode()


def call(msg_id: Any, name: str, arguments: dict[str, Any] | None = None, **params: Any) -> bytes:
    """A tools/call line."""
    return line(
        {
            "jsonrpc": "2.0",
            "id": msg_id,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}, **params},
        }
    )


def replies(pipe: Pipe) -> list[Any]:
    """What was written to a pipe, parsed."""
    return [json.loads(x) for x in pipe.lines]


def test_over_long_request_is_answered(rig: Any) -> None:
    """A request dropped for its size gets an error under its own id, not silence."""
    fw, client, target, _ = rig
    fw.on_client_overlong(
        b'{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"write","arguments":{"c":"xxxx',
        70_000_000,
    )
    (error,) = replies(client)
    assert (error["id"], error["error"]["code"]) == (41, rpc.INVALID_REQUEST)
    assert target.lines == []


def test_over_long_answer_to_the_server_is_reported_to_it(rig: Any) -> None:
    """The agent's over-long answer to a server request becomes an error the server receives."""
    fw, client, target, _ = rig
    fw.on_client_overlong(b'{"jsonrpc":"2.0","id":"s-1","result":{"content":"xxxx', 70_000_000)
    (error,) = replies(target)
    assert error["id"] == "s-1" and "error" in error
    assert client.lines == []


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (b'{"jsonrpc":"2.0","id":5,"result":{"content":[{"text":"xxx', b'xxx"}]}}'),
        (b'{"result":{"content":[{"text":"xxx', b'xxx"}]},"jsonrpc":"2.0","id":5}'),  # TypeScript's order
    ],
)
def test_over_long_answer_from_the_server_fails_its_request(rig: Any, head: bytes, tail: bytes) -> None:
    """When the server's answer is dropped for its size, the agent's request gets an error instead."""
    fw, client, _, _ = rig
    fw.on_client_line(line({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "x"}}))
    fw.on_target_overlong(head, tail, 300_000_000)
    (error,) = replies(client)
    assert (error["id"], error["error"]["code"]) == (5, rpc.INTERNAL_ERROR)
    fw.on_target_exit()
    assert len(client.lines) == 1  # answered once, not again when the server exits


def test_refused_answer_to_the_server_is_reported_to_it(rig: Any) -> None:
    """An answer the strict parser refuses is not forwarded, but the server learns its request failed."""
    fw, client, target, _ = rig
    fw.on_client_line(b'{"jsonrpc":"2.0","id":7,"result":{"a":1,"a":2}}')
    (error,) = replies(target)
    assert error["id"] == 7 and error["error"]["code"] == rpc.INTERNAL_ERROR
    assert client.lines == []


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"[]", {"jsonrpc": "2.0", "id": None, "error": {"code": -32600}}),
        (b"not json", {"jsonrpc": "2.0", "id": None, "error": {"code": -32700}}),
        (b'[{"jsonrpc":"2.0","method":"notifications/initialized"}]', None),
        (b'{"jsonrpc":"2.0","method":"ping","extra":1}', None),  # a notification is owed nothing
    ],
)
def test_json_rpc_errors_without_an_id(rig: Any, sent: bytes, expected: dict[str, Any] | None) -> None:
    """Unreadable input gets JSON-RPC's null-id error; a refused notification gets no answer."""
    fw, client, target, _ = rig
    fw.on_client_line(sent)
    assert target.lines == []
    if expected is None:
        assert client.lines == []
    else:
        (got,) = replies(client)
        assert (got["id"], got["error"]["code"]) == (None, expected["error"]["code"])


def test_batch_requests_each_get_an_error(rig: Any) -> None:
    """A batch is refused as a whole, with one error per request in it (JSON-RPC's batch answer)."""
    fw, client, target, daemon = rig
    batch = (
        b"[" + call(1, "delete_user") + b"," + line({"jsonrpc": "2.0", "id": "b", "method": "ping"}) + b"]"
    )
    fw.on_client_line(batch)
    ((first, second),) = replies(client)
    assert [first["id"], second["id"]] == [1, "b"]
    assert target.lines == [] and daemon.pending == []


def test_lone_surrogate_id_is_refused_and_echoed(rig: Any) -> None:
    """A request id that cannot be written as UTF-8 is refused; the error echoes it as it was escaped."""
    fw, client, target, daemon = rig
    fw.on_client_line(b'{"jsonrpc":"2.0","id":"\\ud800","method":"tools/call","params":{"name":"x"}}')
    (reply,) = client.lines
    assert reply.startswith(b'{"jsonrpc":"2.0","id":"\\ud800","error":{"code":-32600,')
    assert target.lines == [] and daemon.pending == []


def test_unsafe_integer_id_is_refused(rig: Any) -> None:
    """An id a JavaScript server would round (and answer under another id) is refused up front."""
    fw, client, target, _ = rig
    fw.on_client_line(b'{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}')
    (error,) = replies(client)
    assert error["id"] == 9007199254740993 and target.lines == []


def test_a_bug_on_one_message_does_not_stop_the_next(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected failure answers that request with an internal error; the next message is served."""
    fw, client, target, _ = rig
    monkeypatch.setattr(fw, "_note_client", lambda method, params: 1 / 0)
    fw.on_client_line(line({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
    monkeypatch.undo()
    fw.on_client_line(line({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
    (error,) = replies(client)
    assert (error["id"], error["error"]["code"]) == (1, rpc.INTERNAL_ERROR)
    assert [json.loads(x)["id"] for x in target.lines] == [2]


def test_nonsense_from_the_daemon_fails_closed(rig: Any) -> None:
    """A confirm answered with frozen params that are not an object: nothing runs, the agent is told."""
    fw, client, target, daemon = rig
    fw.on_client_line(call(3, CONFIRM_TOOL, {"otp": "123456"}))
    ((confirm, callback),) = daemon.pending
    callback(p.Confirmed(confirm.rid, True, "approved", "A-1", b"[1,2]"), "")
    (reply,) = replies(client)
    assert reply["id"] == 3 and reply["result"]["isError"] is True
    assert target.lines == []


def test_a_daemon_that_cannot_be_told_does_not_stop_the_relay(
    rig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note that cannot be sent is logged; a tool name that cannot be encoded as sent reaches the daemon
    escaped, and the agent gets the listing."""
    fw, client, _, daemon = rig

    def broken(message: p.Message, *, sticky: str | None = None) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(daemon, "notify", broken)
    fw.on_client_line(line({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
    fw.on_target_line(b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"\\ud800"}]}}')
    ((definitions, _),) = daemon.pending
    p.encode(definitions)
    daemon.answer_all()
    (listing,) = replies(client)
    assert [t["name"] for t in listing["result"]["tools"]] == ["\ud800", CONFIRM_TOOL]


def test_client_info_with_a_lone_surrogate_still_reaches_the_daemon(rig: Any) -> None:
    """Who the agent says it is goes to the console even when its name cannot be encoded as sent."""
    fw, _, target, daemon = rig
    fw.on_client_line(
        b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"a\\ud800","version":"1"}}}'
    )
    assert daemon.notes == [p.ClientInfo("a?", "1", "")]
    assert len(target.lines) == 1


def test_cancelled_confirm_does_not_run_the_approved_call(rig: Any) -> None:
    """If the agent cancels its confirm before the daemon answers, the approved call is not sent."""
    fw, client, target, daemon = rig
    fw.on_client_line(call(1, "delete_user", {"id": 1}))
    daemon.answer(0)
    fw.on_client_line(call(2, CONFIRM_TOOL, {"otp": daemon.codes[0]}))
    fw.on_client_line(
        line({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
    )
    daemon.answer(0)
    assert target.lines == []
    assert len(client.lines) == 1  # only the pause; the cancelled confirm is not answered
    (outcome,) = [n for n in daemon.notes if isinstance(n, p.Outcome)]
    assert (outcome.state, outcome.ok) == ("not_run", False)  # the daemon puts the action back


def test_replay_takes_transport_fields_from_the_confirm(rig: Any) -> None:
    """The frozen call runs with the confirm's _meta (no case twin left behind) and the intercepted task."""
    fw, _, target, daemon = rig
    fw.on_client_line(call(1, "delete_user", {"id": 9}, _META={"x": 1}, task={"ttl": 5}))
    daemon.answer(0)
    fw.on_client_line(call(2, CONFIRM_TOOL, {"otp": daemon.codes[0]}, _meta={"progressToken": 2}))
    daemon.answer(0)
    (sent,) = replies(target)
    assert sent["params"] == {
        "name": "delete_user",
        "arguments": {"id": 9},
        "task": {"ttl": 5},
        "_meta": {"progressToken": 2},
    }
    rpc.loads_strict(target.lines[0])  # and it has no keys that differ only in case


def test_continuation_is_single_use_and_runs_the_approved_call(rig: Any) -> None:
    """An input_required answer to an approved call yields a token; a retry that only brings it back
    runs the frozen call once more without asking, and the token works once."""
    fw, client, target, daemon = rig
    fw.on_client_line(call(1, "delete_user", {"id": 4}))
    daemon.answer(0)
    fw.on_client_line(call(2, CONFIRM_TOOL, {"otp": daemon.codes[0]}))
    daemon.answer(0)
    wire_id = replies(target)[-1]["id"]
    asks = {"resultType": "input_required", "requestState": "s1"}
    fw.on_target_line(line({"jsonrpc": "2.0", "id": wire_id, "result": asks}))
    assert replies(client)[-1]["id"] == 2  # under the confirm's id, not the shim's
    token = replies(client)[-1]["result"]["requestState"]
    assert token.startswith(CONTINUATION_PREFIX)
    for msg_id in (3, 4):
        fw.on_client_line(call(msg_id, CONFIRM_TOOL, {"otp": "x", "id": 666}, requestState=token))
    assert len(daemon.pending) == 0  # the daemon was not asked again: nothing new to show
    forwarded = replies(target)
    assert forwarded[-1]["params"] == {"name": "delete_user", "arguments": {"id": 4}, "requestState": "s1"}
    assert forwarded[-1]["id"] != wire_id and forwarded[-1]["id"].startswith(RUN_ID_PREFIX)
    assert len(forwarded) == 2
    assert replies(client)[-1]["id"] == 4 and replies(client)[-1]["result"]["isError"] is True


def test_retry_that_adds_input_is_judged_and_paused_with_it(rig: Any) -> None:
    """A retry that adds inputResponses adds what the human has not seen: it is judged by the daemon
    with that input, and a paused one runs only after its own approval, with the server's state."""
    fw, client, target, daemon = rig
    fw.on_client_line(call(1, "delete_user", {"id": 4}))
    daemon.answer(0)
    fw.on_client_line(call(2, CONFIRM_TOOL, {"otp": daemon.codes[0]}))
    daemon.answer(0)
    wire_id = replies(target)[-1]["id"]
    result = {"resultType": "input_required", "requestState": "s1"}
    fw.on_target_line(line({"jsonrpc": "2.0", "id": wire_id, "result": result}))
    token = replies(client)[-1]["result"]["requestState"]
    retry = call(3, CONFIRM_TOOL, {}, requestState=token, inputResponses={"q": {"amount": 5000}}, extra=1)
    fw.on_client_line(retry)
    ((judge, _),) = daemon.pending
    assert isinstance(judge, p.ContinueCall) and judge.action_id == f"A-{daemon.codes[0]}"
    assert json.loads(judge.params) == {
        "name": "delete_user",
        "arguments": {"id": 4},
        "inputResponses": {"q": {"amount": 5000}},
    }
    daemon.answer(0)  # "delete": paused again, with a new code
    paused = json.loads(replies(client)[-1]["result"]["content"][0]["text"])
    assert paused["status"] == "PAUSED_FOR_APPROVAL"
    assert paused["action"]["arguments"]["inputResponses"] == {"q": {"amount": 5000}}
    assert len(replies(target)) == 1  # nothing ran
    fw.on_client_line(call(5, CONFIRM_TOOL, {"otp": daemon.codes[1]}))
    daemon.answer(0)
    sent = replies(target)[-1]
    assert sent["params"] == {
        "name": "delete_user",
        "arguments": {"id": 4},
        "inputResponses": {"q": {"amount": 5000}},
        "requestState": "s1",
    }


def test_requests_after_the_target_exits_are_answered_at_once(rig: Any) -> None:
    """Once the server is gone, a request is answered with an error instead of being written nowhere."""
    fw, client, target, _ = rig
    fw.on_target_exit()
    fw.on_client_line(line({"jsonrpc": "2.0", "id": 8, "method": "tools/list"}))
    (error,) = replies(client)
    assert (error["id"], error["error"]["code"]) == (8, rpc.TARGET_GONE)
    assert target.lines == []
