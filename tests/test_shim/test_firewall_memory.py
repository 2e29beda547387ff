"""The shim's message handling in memory: a fake daemon link, lists as the two pipes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon import protocol as p
from helpers.memory import FakeLink, Lines
from shim.confirm import RUN_ID_PREFIX
from shim.firewall import CONFIRM_TOOL, Firewall, response_id, rewrite_tools_list
from shim.listing import NOT_A_RESPONSE


@pytest.fixture
def rig() -> tuple[Firewall, Lines, Lines, FakeLink]:
    client, target, link = Lines(), Lines(), FakeLink()
    return Firewall(client, target, link), client, target, link


def call(msg_id: int, name: str, arguments: dict[str, Any], **extra: Any) -> bytes:
    params = {"name": name, "arguments": arguments, **extra}
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}).encode()


def test_untouched_lines_are_forwarded_byte_for_byte(rig: Any) -> None:
    """Messages the shim need not change reach the target exactly as sent, odd spacing and all."""
    fw, _, target, link = rig
    line = b'{ "jsonrpc" : "2.0", "id" : 1, "method" : "tools/list" }\r'
    fw.on_client_line(line)
    assert target.lines == [line]
    assert link.requests == []


def test_allowed_call_is_forwarded_as_judged(rig: Any) -> None:
    """The target gets the re-serialised call that the daemon judged, only after the verdict."""
    fw, _, target, link = rig
    fw.on_client_line(call(7, "get_x", {"a": "ü"}))
    assert target.lines == []
    ((decide, _),) = link.requests
    assert isinstance(decide, p.Decide)
    link.answer(0, p.Verdict(decide.rid, p.ALLOW, "ok", "r"))
    (forwarded,) = target.lines
    assert json.loads(forwarded)["params"] == json.loads(decide.params)
    assert "ü".encode() in forwarded


def test_paused_call_answers_without_code_and_forwards_nothing(rig: Any) -> None:
    """A paused call gets an isError result naming the action; the target sees nothing."""
    fw, client, target, link = rig
    fw.on_client_line(call(3, "delete_user", {"id": 1}))
    link.answer(0, p.Verdict(1, p.APPROVE, "needs approval", "kw", "A-1", 0.0, 3))
    (reply,) = client.json()
    assert reply["result"]["isError"] is True
    assert json.loads(reply["result"]["content"][0]["text"])["action_id"] == "A-1"
    assert target.lines == []


def test_no_verdict_fails_closed(rig: Any) -> None:
    """No answer from the daemon means the call is refused, never forwarded."""
    fw, client, target, link = rig
    fw.on_client_line(call(3, "get_x", {}))
    link.answer(0, None, "the firewall daemon did not answer in time")
    assert target.lines == []
    assert "did not answer" in client.json()[0]["result"]["content"][0]["text"]


def test_confirm_replays_frozen_params_with_the_new_meta(rig: Any) -> None:
    """The confirmed call runs the frozen params under the shim's own id, with the confirm's _meta, and
    its answer goes back under the confirm's id."""
    fw, client, target, link = rig
    frozen = json.dumps(
        {"name": "delete_user", "arguments": {"id": 42}, "_meta": {"progressToken": 1}}
    ).encode()
    fw.on_client_line(call(9, CONFIRM_TOOL, {"otp": "123 456", "id": 7}, _meta={"progressToken": 9}))
    confirm, _ = link.requests[0]
    assert isinstance(confirm, p.Confirm) and confirm.otp == "123456"
    link.answer(0, p.Confirmed(confirm.rid, True, "approved", "A-1", frozen))
    sent = json.loads(target.lines[0])
    assert sent["id"].startswith(RUN_ID_PREFIX)  # an id of the shim's own, never the agent's
    assert sent["params"] == {"name": "delete_user", "arguments": {"id": 42}, "_meta": {"progressToken": 9}}
    assert link.outcomes() == [("A-1", "sent")]
    fw.on_target_line(json.dumps({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}}).encode())
    assert client.json()[-1] == {"jsonrpc": "2.0", "id": 9, "result": {"content": []}}
    assert link.outcomes() == [("A-1", "sent"), ("A-1", "ran")]


def test_tools_call_notification_is_never_forwarded(rig: Any) -> None:
    """A tools/call without an id is dropped, not judged and not forwarded."""
    fw, client, target, link = rig
    fw.on_client_line(b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_user"}}')
    assert (client.lines, target.lines, link.requests) == ([], [], [])


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"TOOLS/CALL","params":{"name":"x"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x\\udc00"}}',
    ],
)
def test_unjudgeable_calls_get_an_error_and_go_nowhere(rig: Any, line: bytes) -> None:
    """Malformed or ambiguous calls are answered with a JSON-RPC error and never reach the target."""
    fw, client, target, link = rig
    fw.on_client_line(line)
    assert target.lines == [] and link.requests == []
    assert client.json()[0]["error"]["code"] in (-32700, -32600, -32602)


def test_cancel_of_a_call_being_judged_is_swallowed(rig: Any) -> None:
    """A cancel for a call the target never saw does not reach it, and the call is then not run."""
    fw, _, target, link = rig
    fw.on_client_line(call(5, "get_x", {}))
    fw.on_client_line(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}')
    link.answer(0, p.Verdict(1, p.ALLOW, "ok", "r"))
    assert target.lines == []


def test_target_exit_answers_inflight_requests(rig: Any) -> None:
    """Requests the target will never answer get an error when it exits."""
    fw, client, _, _ = rig
    fw.on_client_line(b'{"jsonrpc":"2.0","id":"a","method":"resources/list"}')
    fw.on_target_exit()
    assert client.json()[0]["id"] == "a" and client.json()[0]["error"]["code"] == -32001


def test_tools_list_gets_confirm_once_and_impostors_are_hidden() -> None:
    """The first page gains firewall_confirm; an upstream tool posing as it is dropped from every page."""
    page = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"tools": [{"name": "Firewall_Confirm"}, {"name": "a"}], "nextCursor": ""},
    }
    first_line, listed = rewrite_tools_list(json.dumps(page).encode(), True)
    first = json.loads(first_line)
    later = json.loads(rewrite_tools_list(json.dumps(page).encode(), False)[0])
    assert listed == [{"name": "a", "annotations": {}}]
    assert [t["name"] for t in first["result"]["tools"]] == ["a", CONFIRM_TOOL]
    assert [t["name"] for t in later["result"]["tools"]] == ["a"]
    assert first["result"]["nextCursor"] == ""


def test_response_id_of_big_lines_reads_the_ends() -> None:
    """A 10 MB response's id is found without parsing it; requests are not responses."""
    big = b'{"jsonrpc":"2.0","id":17,"result":{"text":"' + b"x" * 10_000_000 + b'"}}'
    assert response_id(big) == 17
    tail = b'{"result":{"text":"' + b"x" * 10_000_000 + b'"},"jsonrpc":"2.0","id":"k"}'
    assert response_id(tail) == "k"
    assert response_id(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') != 1


def test_big_requests_are_not_answers_and_a_page_in_flight_is_read_as_the_agent_reads_it(rig: Any) -> None:
    """From its ends, a big request from the server is no answer; while a tools/list page is in flight
    a big answer is parsed whole, so a repeated "id" cannot hide which request it answers."""
    fw, client, _, _ = rig
    pad = "x" * 300_000
    request = {"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage", "params": {"p": pad}}
    assert response_id(json.dumps(request).encode()) is NOT_A_RESPONSE
    fw.on_client_line(b'{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"a"}}')
    fw.on_client_line(b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}')
    tricky = {"jsonrpc": "2.0", "id": 5, "result": {"tools": [{"name": "firewall_confirm"}], "pad": pad}}
    line = json.dumps(tricky).encode()[:-1] + b',"id":7}'  # most parsers read id 7
    fw.on_target_line(line)
    (page,) = client.json()
    assert page["id"] == 7
    assert [t["name"] for t in page["result"]["tools"]] == [CONFIRM_TOOL]
    assert page["result"]["tools"][0]["description"].startswith("Approve an action")
