"""The client's-dialog approval in memory: a fake daemon link, lists as the pipes, a manual clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from daemon import protocol as p
from helpers.memory import FakeLink, Lines
from shim.confirm import RUN_ID_PREFIX
from shim.elicit import ASK_ID_PREFIX, INPUT_KEY, SHOWN_LIMIT, STATE_PREFIX, dialog_message, form_elicitation
from shim.firewall import Firewall

MODERN = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
}


class Timers:
    """A schedule whose callbacks run when the test says so."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Callable[[], None], Any]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Any:
        timer = _Timer()
        self.due.append((delay, callback, timer))
        return timer

    def fire(self, delay: float) -> None:
        for when, callback, timer in list(self.due):
            if when == delay and not timer.cancelled:
                timer.cancelled = True
                callback()


class _Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def rig() -> tuple[Firewall, Lines, Lines, FakeLink, Timers]:
    client, target, link, timers = Lines(), Lines(), FakeLink(), Timers()
    return Firewall(client, target, link, hold=20.0, schedule=timers), client, target, link, timers


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **obj}).encode()


def initialize(fw: Firewall, capabilities: dict[str, Any]) -> None:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "c", "version": "1"},
    }
    fw.on_client_line(line({"id": 0, "method": "initialize", "params": params}))


def call(fw: Firewall, msg_id: int, arguments: dict[str, Any], **extra: Any) -> None:
    params = {"name": "delete_user", "arguments": arguments, **extra}
    fw.on_client_line(line({"id": msg_id, "method": "tools/call", "params": params}))


def verdict(rid: int, *, elicit: bool = True) -> p.Verdict:
    return p.Verdict(rid, p.APPROVE, "needs approval", "kw", "A-1", 0.0, 3, False, elicit)


def decided(link: FakeLink, *, elicit: bool = True) -> None:
    (decide, _) = [r for r in link.requests if isinstance(r[0], p.Decide)][-1]
    link.answer(link.requests.index((decide, _)), verdict(decide.rid, elicit=elicit))


def test_legacy_dialog_then_accept_runs_the_daemons_frozen_call(rig: Any) -> None:
    fw, client, target, link, _ = rig
    initialize(fw, {"elicitation": {}})  # an empty object: form, as before modes existed
    call(fw, 7, {"id": 1})
    decided(link)
    (ask,) = [m for m in client.json() if m.get("method") == "elicitation/create"]
    assert ask["id"].startswith(ASK_ID_PREFIX)
    fw.on_client_line(line({"id": ask["id"], "result": {"action": "accept"}}))
    assert [json.loads(t).get("method") for t in target.lines] == ["initialize"]  # the answer stays here
    answer, callback = link.requests[-1]
    assert answer == p.ElicitationAnswer(answer.rid, "A-1", True)  # type: ignore[union-attr]
    frozen = b'{"name":"delete_user","arguments":{"id":1}}'
    callback(p.Confirmed(answer.rid, True, "approved", "A-1", frozen), "")  # type: ignore[union-attr]
    run = json.loads(target.lines[-1])
    assert run["id"].startswith(RUN_ID_PREFIX) and run["params"] == json.loads(frozen)
    fw.on_target_line(line({"id": run["id"], "result": {"content": []}}))
    assert client.json()[-1] == {"jsonrpc": "2.0", "id": 7, "result": {"content": []}}


@pytest.mark.parametrize("capabilities", [{}, {"elicitation": {"url": {}}}, {"elicitation": True}])
def test_no_dialog_without_form_elicitation(rig: Any, capabilities: dict[str, Any]) -> None:
    fw, client, _, link, _ = rig
    initialize(fw, capabilities)
    call(fw, 7, {"id": 1})
    decided(link)
    assert not [m for m in client.json() if m.get("method") == "elicitation/create"]
    assert "PAUSED_FOR_APPROVAL" in client.json()[-1]["result"]["content"][0]["text"]


def test_no_dialog_unless_the_daemon_says_so(rig: Any) -> None:
    fw, client, _, link, _ = rig
    initialize(fw, {"elicitation": {"form": {}}})
    call(fw, 7, {"id": 1})
    decided(link, elicit=False)
    assert "PAUSED_FOR_APPROVAL" in client.json()[-1]["result"]["content"][0]["text"]


@pytest.mark.parametrize(
    ("arguments", "extra"),
    [
        ({"data": "x" * (SHOWN_LIMIT + 1)}, {}),
        ({"id": 1}, {"task": {"ttl": 1}}),
        ({"id": 1}, {"inputResponses": {}}),
    ],
)
def test_no_dialog_for_what_it_cannot_show_whole(
    rig: Any, arguments: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Arguments too big for a dialog, or params beyond a tool and arguments: paused as usual."""
    fw, client, _, link, _ = rig
    initialize(fw, {"elicitation": {"form": {}}})
    call(fw, 7, arguments, **extra)
    decided(link)
    assert not [m for m in client.json() if m.get("method") == "elicitation/create"]


def test_forged_answers_are_dropped(rig: Any) -> None:
    """An answer under an id the shim never used, or no longer waits for, approves nothing and
    reaches nobody; other answers go to the server as before."""
    fw, client, target, link, timers = rig
    initialize(fw, {"elicitation": {"form": {}}})
    fw.on_client_line(line({"id": ASK_ID_PREFIX + "0" * 16, "result": {"action": "accept"}}))
    fw.on_client_line(line({"id": 5, "result": {"action": "accept"}}))
    assert [json.loads(t).get("id") for t in target.lines] == [0, 5]
    call(fw, 7, {"id": 1})
    decided(link)
    (ask,) = [m for m in client.json() if m.get("method") == "elicitation/create"]
    timers.fire(20.0)  # the hold runs out: PAUSED, and the dialog is withdrawn
    cancel = client.json()[-2]
    assert cancel["method"] == "notifications/cancelled" and cancel["params"]["requestId"] == ask["id"]
    assert "PAUSED_FOR_APPROVAL" in client.json()[-1]["result"]["content"][0]["text"]
    requests = len(link.requests)
    fw.on_client_line(line({"id": ask["id"], "result": {"action": "accept"}}))  # too late
    assert len(link.requests) == requests and len(target.lines) == 2


def test_refused_or_failed_dialog_falls_back_to_paused(rig: Any) -> None:
    fw, client, _, link, _ = rig
    initialize(fw, {"elicitation": {"form": {}}})
    call(fw, 7, {"id": 1})
    decided(link)
    (ask,) = [m for m in client.json() if m.get("method") == "elicitation/create"]
    fw.on_client_line(line({"id": ask["id"], "result": {"action": "accept"}}))
    answer, callback = link.requests[-1]
    callback(p.Error(answer.rid, p.E_FORBIDDEN, "not enabled"), "")  # type: ignore[union-attr]
    assert "PAUSED_FOR_APPROVAL" in client.json()[-1]["result"]["content"][0]["text"]
    assert p.Held("A-1", 0.0) in link.notes


def test_cancelled_held_call_withdraws_the_dialog(rig: Any) -> None:
    fw, client, _, link, _ = rig
    initialize(fw, {"elicitation": {"form": {}}})
    call(fw, 7, {"id": 1})
    decided(link)
    (ask,) = [m for m in client.json() if m.get("method") == "elicitation/create"]
    fw.on_client_line(line({"method": "notifications/cancelled", "params": {"requestId": 7}}))
    assert client.json()[-1]["params"]["requestId"] == ask["id"]
    assert p.Withdraw("A-1") in link.notes


def test_stateless_retry_runs_the_frozen_call_not_its_own(rig: Any) -> None:
    """The retry's own tool and arguments are not what runs: the daemon's frozen call is."""
    fw, client, target, link, _ = rig
    call(fw, 7, {"id": 1}, _meta=MODERN)
    decided(link)
    first = client.json()[-1]["result"]
    assert first["resultType"] == "input_required"
    state = first["requestState"]
    assert state.startswith(STATE_PREFIX)
    assert first["inputRequests"][INPUT_KEY]["method"] == "elicitation/create"
    retry = {
        "name": "delete_everything",
        "arguments": {"id": 999},
        "_meta": MODERN,
        "inputResponses": {INPUT_KEY: {"action": "accept"}},
        "requestState": state,
    }
    fw.on_client_line(line({"id": 8, "method": "tools/call", "params": retry}))
    answer, callback = link.requests[-1]
    assert isinstance(answer, p.ElicitationAnswer) and answer.accepted
    frozen = b'{"name":"delete_user","arguments":{"id":1}}'
    callback(p.Confirmed(answer.rid, True, "approved", "A-1", frozen), "")
    run = json.loads(target.lines[-1])
    assert run["params"]["name"] == "delete_user" and run["params"]["arguments"] == {"id": 1}
    fw.on_client_line(line({"id": 9, "method": "tools/call", "params": {**retry}}))  # single use
    assert "does not know this requestState" in client.json()[-1]["result"]["content"][0]["text"]


def test_stateless_retry_without_an_answer_is_paused(rig: Any) -> None:
    fw, client, _, link, _ = rig
    call(fw, 7, {"id": 1}, _meta=MODERN)
    decided(link)
    state = client.json()[-1]["result"]["requestState"]
    params = {"name": "delete_user", "arguments": {"id": 1}, "_meta": MODERN, "requestState": state}
    fw.on_client_line(line({"id": 8, "method": "tools/call", "params": params}))
    assert "PAUSED_FOR_APPROVAL" in client.json()[-1]["result"]["content"][0]["text"]


def test_stateless_request_without_the_capability_gets_no_dialog(rig: Any) -> None:
    fw, client, _, link, _ = rig
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    call(fw, 7, {"id": 1}, _meta=meta)
    decided(link)
    assert client.json()[-1]["result"]["resultType"] == "complete"


def test_form_capability_reading() -> None:
    assert form_elicitation({"elicitation": {}}) and form_elicitation(
        {"elicitation": {"form": {}, "url": {}}}
    )
    assert not form_elicitation({"elicitation": {"url": {}}}) and not form_elicitation(None)


def test_dialog_shows_everything_escaped() -> None:
    params = json.dumps({"name": "x\u202e", "arguments": {"p": "\x1b]0;t\x07ü"}}).encode()
    message = dialog_message("x\u202e", params, verdict(1))
    assert message is not None
    assert all(ch == "\n" or " " <= ch <= "~" for ch in message)
    assert "\\u202e" in message and "\\u001b]0;t\\u0007\\u00fc" in message and "A-1" in message
