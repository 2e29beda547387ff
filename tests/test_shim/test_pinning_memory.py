"""The shim's side of tool pinning, in memory: pages checked before the agent sees them, and what
happens when firewalld is away, late, or pushes a change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon import protocol as p
from helpers.memory import FakeLink, Lines
from shim import pinning
from shim.firewall import Firewall

WEATHER = {"name": "get_weather", "description": "Weather.", "inputSchema": {"type": "object"}, "icons": []}
TIME = {"name": "get_time", "description": "The time."}


class PinLink(FakeLink):
    """A fake link that can be down, and keeps what the shim asks it to send after a reconnect."""

    def __init__(self, ready: bool = True) -> None:
        super().__init__()
        self.ready = ready
        self.kept: dict[str, p.Message] = {}

    def stick(self, key: str, message: p.Message | None) -> None:
        if message is None:
            self.kept.pop(key, None)
        else:
            self.kept[key] = message


def rig(ready: bool = True) -> tuple[Firewall, Lines, Lines, PinLink]:
    client, target, link = Lines(), Lines(), PinLink(ready)
    return Firewall(client, target, link), client, target, link


def list_tools(
    fw: Firewall, msg_id: int, *tools: Any, cursor: str | None = None, next_cursor: str = ""
) -> None:
    params = {"cursor": cursor} if cursor is not None else {}
    fw.on_client_line(
        json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tools/list", "params": params}).encode()
    )
    result: dict[str, Any] = {"tools": list(tools)}
    if next_cursor:
        result["nextCursor"] = next_cursor
    fw.on_target_line(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}).encode())


def names(line: dict[str, Any]) -> list[str]:
    return [t["name"] for t in line["result"]["tools"]]


def test_page_waits_for_firewalld_and_hidden_tools_are_dropped() -> None:
    """The page reaches the agent only once firewalld has answered, less the names it hides; the
    definitions sent are the pinned members only."""
    fw, client, _, link = rig()
    list_tools(fw, 1, WEATHER, TIME, next_cursor="2")
    assert client.lines == []
    ((check, _),) = link.requests
    assert isinstance(check, p.ToolDefinitions) and check.first_page and check.more
    assert [json.loads(d) for d in check.tools] == [{k: v for k, v in WEATHER.items() if k != "icons"}, TIME]
    link.answer(0, p.ToolsHidden(check.rid, ["get_weather"]))
    (page,) = client.json()
    assert names(page) == ["get_time", "firewall_confirm"] and page["result"]["nextCursor"] == "2"


def test_an_agent_cannot_reuse_the_id_of_a_page_being_checked() -> None:
    """While its page waits for firewalld, the request id is still in use."""
    fw, client, target, _ = rig()
    list_tools(fw, 1, WEATHER)
    fw.on_client_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    (refusal,) = client.json()
    assert refusal["id"] == 1 and "already used" in refusal["error"]["message"]
    assert len(target.lines) == 1


def test_daemon_away_passes_the_page_and_keeps_it_for_later() -> None:
    """firewalld away: the page passes as listed (calls fail closed anyway) and its definitions are
    kept to be checked at the reconnect; a hide then tells the agent to list again."""
    fw, client, _, link = rig(ready=False)
    list_tools(fw, 1, WEATHER, TIME)
    assert names(client.json()[0]) == ["get_weather", "get_time", "firewall_confirm"]
    (kept,) = link.kept.values()
    assert isinstance(kept, p.ToolDefinitions) and kept.rid == 0 and kept.first_page
    fw.on_late_reply(p.ToolsHidden(0, ["get_weather"]))
    assert client.json()[-1] == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    fw.on_late_reply(p.ToolsHidden(0, []))  # nothing hidden: nothing to say
    assert len(client.lines) == 2


def test_a_new_listing_replaces_what_was_kept() -> None:
    """Only the latest listing is kept: its first page drops the pages of the one before."""
    fw, _, _, link = rig(ready=False)
    list_tools(fw, 1, WEATHER, next_cursor="2")
    list_tools(fw, 2, TIME, cursor="2")
    assert list(link.kept) == ["pins:0", "pins:1"]
    list_tools(fw, 3, TIME)
    assert list(link.kept) == ["pins:0"]
    assert json.loads(link.kept["pins:0"].tools[0])["name"] == "get_time"  # type: ignore[attr-defined]


def test_no_answer_for_a_page_that_could_not_be_kept_hides_its_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page too big to keep for a later check, and not checked now: shown without its tools."""
    monkeypatch.setattr(pinning, "_MAX_KEPT", 10)
    fw, client, _, link = rig()
    list_tools(fw, 1, WEATHER)
    link.answer(0, None, "the firewall daemon did not answer in time")
    assert names(client.json()[0]) == ["firewall_confirm"]


def test_a_page_too_big_to_check_is_shown_without_its_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pinning, "_MAX_SENT", 10)
    fw, client, _, link = rig()
    list_tools(fw, 1, WEATHER)
    assert link.requests == []
    assert names(client.json()[0]) == ["firewall_confirm"]


def test_pins_changed_is_passed_on_each_open_subscription() -> None:
    """A push from firewalld becomes tools/list_changed: on every open subscriptions/listen stream
    (2026-07-28), else a plain notification."""
    fw, client, _, _ = rig()
    fw.on_push(p.PinsChanged())
    assert client.json() == [{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}]
    fw.on_client_line(b'{"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{}}')
    fw.on_push(p.PinsChanged())
    meta = client.json()[-1]["params"]["_meta"]
    assert meta == {"io.modelcontextprotocol/subscriptionId": "sub-1"}


def test_the_servers_later_lines_wait_behind_a_page_being_checked() -> None:
    """The agent gets the server's lines in the server's order, though a page waits for firewalld."""
    fw, client, _, link = rig()
    list_tools(fw, 1, WEATHER)
    fw.on_client_line(b'{"jsonrpc":"2.0","id":2,"method":"ping"}')
    fw.on_target_line(b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}')
    fw.on_target_line(b'{"jsonrpc":"2.0","id":2,"result":{}}')
    assert client.lines == []
    ((check, _),) = link.requests
    link.answer(0, p.ToolsHidden(check.rid, []))
    assert [m.get("id", m.get("method")) for m in client.json()] == [1, "notifications/message", 2]
    fw.on_target_line(b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}')
    assert len(client.lines) == 4  # nothing waits: written at once


def test_order_gives_way_to_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound, the server's lines are written at once rather than held."""
    monkeypatch.setattr(pinning, "_MAX_BEHIND", 10)
    fw, client, _, _ = rig()
    list_tools(fw, 1, WEATHER)
    fw.on_target_line(b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}')
    assert [m["method"] for m in client.json()] == ["notifications/message"]
