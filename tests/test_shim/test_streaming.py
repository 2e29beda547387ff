"""Which big lines from the target the firewall lets the relay stream, and what it notes when they end.

In memory, as in ``test_firewall_memory.py``: the request's fate is read from what the agent gets when
the target exits (an error for every request still in flight).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon import protocol as p
from helpers.memory import FakeLink, Lines
from shim.firewall import CONFIRM_TOOL, Firewall
from shim.streaming import Streamed

GONE = -32001


@pytest.fixture
def rig() -> tuple[Firewall, Lines, FakeLink]:
    client, link = Lines(), FakeLink()
    return Firewall(client, Lines(), link), client, link


def ask(fw: Firewall, msg_id: int | str, method: str = "resources/read") -> None:
    """The agent sends a request that goes straight to the target."""
    fw.on_client_line(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method}).encode())


def still_waiting(fw: Firewall, client: Lines) -> set[Any]:
    """The ids the target's exit answers with an error: those still in flight."""
    before = len(client.lines)
    fw.on_target_exit()
    answers = client.json()[before:]
    assert all(a["error"]["code"] == GONE for a in answers)
    return {a["id"] for a in answers}


def replaying(fw: Firewall, link: FakeLink, msg_id: int) -> None:
    """An approved call is replayed to the target under ``msg_id``."""
    params = {"name": CONFIRM_TOOL, "arguments": {"otp": "123456"}}
    fw.on_client_line(
        json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}).encode()
    )
    confirm, answer = link.requests[-1]
    assert isinstance(confirm, p.Confirm)
    frozen = json.dumps({"name": "delete_user", "arguments": {"id": 42}}).encode()
    answer(p.Confirmed(confirm.rid, True, "ok", "A-1", frozen), "")


@pytest.mark.parametrize(
    "head",
    [
        b'{"jsonrpc":"2.0","id":5,"result":{"contents":[{"text":"',
        b'{ "jsonrpc" : "2.0" , "id" : 5 , "error" : {"code":1,"message":"',
        b'{"id":5,"result":{',
        b'{"id":5,"jsonrpc":"2.0","result":{',  # sorted keys
    ],
)
def test_answer_with_its_id_first_streams_and_is_answered_when_it_ends(rig: Any, head: bytes) -> None:
    """Its id stays in flight until the line ends (its newline): then the request is answered."""
    fw, client, _ = rig
    ask(fw, 5)
    ask(fw, 6)
    streamed = fw.may_stream(head)
    assert streamed == Streamed(True, 5)
    fw.on_target_streamed(streamed, b"...}}")
    assert still_waiting(fw, client) == {6}
    assert client.lines[:-1] == []  # nothing but the exit error for 6


def test_answer_with_its_id_last_streams_when_no_list_or_approved_call_waits(rig: Any) -> None:
    """JavaScript SDKs put the id last: it is read from the line's tail when the line ends."""
    fw, client, _ = rig
    ask(fw, 5)
    ask(fw, "a")
    streamed = fw.may_stream(b'{"result":{"contents":[{"text":"')
    assert streamed is not None
    fw.on_target_streamed(streamed, b'xxx"}]},"jsonrpc":"2.0","id":"a"}\r')
    assert still_waiting(fw, client) == {5}


def test_tools_list_pages_are_never_streamed(rig: Any) -> None:
    """A tools/list page must be read whole (it gains firewall_confirm); an id-last line might be one."""
    fw, _, _ = rig
    ask(fw, 5)
    ask(fw, 6, "tools/list")
    assert fw.may_stream(b'{"jsonrpc":"2.0","id":6,"result":{"tools":[') is None
    assert fw.may_stream(b'{"result":{"tools":[') is None
    # Nor is another answer while one waits: {"id":5,...,"id":6} is read as 6 by most parsers.
    assert fw.may_stream(b'{"jsonrpc":"2.0","id":5,"result":{') is None


def test_approved_calls_answer_is_never_streamed(rig: Any) -> None:
    """An approved call's answer must be read whole (its outcome is audited); an id-last line might be it."""
    fw, _, link = rig
    ask(fw, 5)
    replaying(fw, link, 9)
    assert fw.may_stream(b'{"jsonrpc":"2.0","id":9,"result":{') is None
    assert fw.may_stream(b'{"result":{') is None
    assert fw.may_stream(b'{"jsonrpc":"2.0","id":5,"result":{') is None


def test_servers_own_requests_stream_whatever_their_id(rig: Any) -> None:
    """A request or notification from the server answers nothing: it streams, and leaves ids alone."""
    fw, client, _ = rig
    ask(fw, 6, "tools/list")
    for head in (
        b'{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage","params":{',
        b'{"jsonrpc":"2.0","method":"notifications/message","params":{',
        b'{"method":"roots/list",',
    ):
        streamed = fw.may_stream(head)
        assert streamed is not None and not streamed.answer
        fw.on_target_streamed(streamed, b',"id":6}')
    assert still_waiting(fw, client) == {6}


@pytest.mark.parametrize(
    "head",
    [
        b'[{"jsonrpc":"2.0","id":5,"result":{',  # a batch
        b'{"jsonrpc":"2.0","_meta":{},"id":5,"result":{',  # a member before the id
        b' {"jsonrpc":"2.0","id":5,"result":{',
        b'{"jsonrpc":"2.0","id":null,"error":{',
        b'{"jsonrpc":"2.0","id":"\\q","result":{',  # not a JSON string
        b'{"jsonrpc":"2.0","id":5,"results":{',
        b'{"jsonrpc":"2.0","id":5,"_meta":{},"result":{',
        b'{"jsonrpc":"2.0","id":5',
        b"not json at all",
    ],
)
def test_other_beginnings_are_assembled(rig: Any, head: bytes) -> None:
    """Only the shapes the firewall knows are streamed; anything else is read whole, as before."""
    fw, _, _ = rig
    ask(fw, 5)
    assert fw.may_stream(head) is None


def test_line_cut_short_leaves_its_request_to_the_exit_error(rig: Any) -> None:
    """A streamed answer that never ended: the agent could not parse it, so the exit still answers it."""
    fw, client, _ = rig
    ask(fw, 5)
    assert fw.may_stream(b'{"jsonrpc":"2.0","id":5,"result":{') is not None
    assert still_waiting(fw, client) == {5}


def test_unreadable_tail_is_ignored(rig: Any) -> None:
    """An id-last answer whose tail has no id: nothing is taken out of flight, nothing raises."""
    fw, client, _ = rig
    ask(fw, 5)
    streamed = fw.may_stream(b'{"result":{')
    assert streamed is not None
    fw.on_target_streamed(streamed, b'"id":"\\q"}')
    fw.on_target_streamed(streamed, b"truncated")
    assert still_waiting(fw, client) == {5}
