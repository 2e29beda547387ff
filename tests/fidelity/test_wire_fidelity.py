"""Fidelity at the byte level: the scripted server, run directly and behind the real shim and firewalld.

Each test sends the same messages both ways and compares what came back and what reached the server.
The only differences allowed are the firewall's own: ``firewall_confirm`` on the first tools/list page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command
from helpers.fidelity import effects, recorded, scripted_command
from helpers.wire import Peer, call, initialize, jline, notification, request

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
LEGACY_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
MODERN = "2026-07-28"


def modern_meta(**extra: Any) -> dict[str, Any]:
    """The ``_meta`` of a stateless 2026-07-28 request."""
    return {
        VERSION_KEY: MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "wire", "version": "1"},
        **extra,
    }


def run(peer: Peer, script: list[dict[str, Any] | bytes]) -> list[bytes]:
    """Send each message; after a request, read up to its response. Returns every line received."""
    for message in script:
        peer.send(message)
        parsed = json.loads(message) if isinstance(message, bytes) else message
        if "id" in parsed and "method" in parsed:
            peer.response(parsed["id"])
    return list(peer.raw)


def both(
    tmp_path: Path, daemon: Daemon, policy: Path, script: list[dict[str, Any] | bytes], **server: Any
) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Run ``script`` directly and through the shim: (direct out, shim out, direct record, shim record)."""
    outs, records = [], []
    for way in ("direct", "shim"):
        record, fx = tmp_path / f"{way}.record", tmp_path / f"{way}.effects"
        target = scripted_command(record, fx, **server)
        command = target if way == "direct" else shim_command(target, config=policy)
        with Peer(command, daemon.env, stderr=tmp_path / f"{way}.stderr") as peer:
            outs.append(run(peer, script))
            assert peer.close() == 0
        records.append(recorded(record))
    return outs[0], outs[1], records[0], records[1]


def without_confirm(line: bytes) -> tuple[dict[str, Any], int]:
    """A tools/list response minus firewall_confirm, and how many firewall_confirm it listed."""
    msg = json.loads(line)
    tools = msg["result"]["tools"]
    kept = [t for t in tools if t["name"] != "firewall_confirm"]
    msg["result"]["tools"] = kept
    return msg, len(tools) - len(kept)


def assert_same_except_listing(direct: list[bytes], shim: list[bytes]) -> None:
    """Every line is byte-identical, except that tools/list first pages gain exactly one firewall_confirm."""
    assert len(direct) == len(shim)
    for d, s in zip(direct, shim, strict=True):
        if d == s:
            continue
        d_msg, d_confirms = without_confirm(d)
        s_msg, s_confirms = without_confirm(s)
        assert (d_msg, d_confirms, s_confirms) == (s_msg, 0, 1)


def assert_forwarded_as_sent(sent: list[dict[str, Any] | bytes], record: list[bytes]) -> None:
    """What reached the server is what was sent: byte for byte, or (for a judged tools/call) the same JSON."""
    lines = [m if isinstance(m, bytes) else jline(m) for m in sent]
    assert len(record) == len(lines)
    for line, got in zip(lines, record, strict=True):
        if b'"tools/call"' in line:
            assert json.loads(got) == json.loads(line)
            assert len(got) <= len(line)  # re-serialised compactly: never inflated
        else:
            assert got == line


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_every_handshake_version_passes_unchanged(
    version: str, tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """initialize at each protocol version, then ping, listing and a call: same bytes as a direct session."""
    script: list[dict[str, Any] | bytes] = [
        initialize(0, version),
        notification("notifications/initialized"),
        request(1, "ping"),
        request(2, "tools/list"),
        call(3, "echo", {"text": "naïve ✓"}),
    ]
    direct, shim, direct_rec, shim_rec = both(tmp_path, fdaemon, permissive, script)
    assert json.loads(shim[0])["result"]["protocolVersion"] == version
    assert_same_except_listing(direct, shim)
    assert_forwarded_as_sent(script, shim_rec)
    assert direct_rec == [jline(m) if isinstance(m, dict) else m for m in script]


def test_stateless_requests_carry_version_in_meta(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """2026-07-28: server/discover, then requests with version and capabilities in _meta; no handshake."""
    caps = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    script: list[dict[str, Any] | bytes] = [
        request(0, "server/discover", {"_meta": modern_meta()}),
        request(1, "tools/list", {"_meta": modern_meta(**caps)}),
        call(2, "echo", {"a": 1}, _meta=modern_meta(**caps)),
        request(3, "ping", {"_meta": modern_meta()}),
    ]
    direct, shim, _, shim_rec = both(tmp_path, fdaemon, permissive, script)
    assert_same_except_listing(direct, shim)
    assert_forwarded_as_sent(script, shim_rec)
    echoed = json.loads(json.loads(shim[2])["result"]["content"][0]["text"])
    assert echoed["_meta"] == modern_meta(**caps)
    assert json.loads(shim[1])["result"]["resultType"] == "complete"


def test_discover_falls_back_to_initialize(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """A client that opens with server/discover gets the old server's -32601, then initializes."""
    script: list[dict[str, Any] | bytes] = [
        request(0, "server/discover", {"_meta": modern_meta()}),
        initialize(1, "2025-11-25"),
        notification("notifications/initialized"),
        call(2, "echo", {}),
    ]
    direct, shim, _, shim_rec = both(tmp_path, fdaemon, permissive, script, legacy_only=True)
    assert json.loads(shim[0])["error"]["code"] == -32601
    assert_same_except_listing(direct, shim)
    assert_forwarded_as_sent(script, shim_rec)


def test_pagination_lists_confirm_once_and_keeps_cursors(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Three pages: firewall_confirm on the first only; an empty-string cursor is followed, not the end."""
    script: list[dict[str, Any] | bytes] = [
        initialize(0),
        request(1, "tools/list"),
        request(2, "tools/list", {"cursor": ""}),
        request(3, "tools/list", {"cursor": "p3"}),
        request(4, "tools/list", {"cursor": None}),  # an explicit null cursor starts a listing too
    ]
    direct, shim, _, shim_rec = both(tmp_path, fdaemon, permissive, script)
    assert_same_except_listing(direct, shim)
    assert_forwarded_as_sent(script, shim_rec)
    pages = [json.loads(line)["result"] for line in shim[1:]]
    assert [p.get("nextCursor") for p in pages] == ["", "p3", None, ""]
    names = [t["name"] for p in pages[:3] for t in p["tools"]]
    assert names.count("firewall_confirm") == 1
    assert [t["name"] for t in pages[3]["tools"]].count("firewall_confirm") == 1


def test_progress_and_list_changed_notifications_pass(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Progress notifications (with the caller's token) and tools/list_changed reach the agent unchanged."""
    script: list[dict[str, Any] | bytes] = [
        initialize(0),
        call(1, "slow", {}, _meta={"progressToken": "tok-1"}),
        call(2, "notify", {}),
    ]
    direct, shim, _, _ = both(tmp_path, fdaemon, permissive, script)
    assert direct == shim
    methods = [json.loads(line).get("method") for line in shim]
    assert methods.count("notifications/progress") == 3
    assert "notifications/tools/list_changed" in methods


def test_unicode_is_forwarded_as_sent(tmp_path: Path, fdaemon: Daemon, permissive: Path) -> None:
    """Line and paragraph separators, emoji and escaped NULs arrive as sent: nothing inflated or altered."""
    text = "a\u2028b\u2029c 😀 \x00 é"
    raw_ping = b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"_meta":{"t":'
    raw_ping += b'"\\u00e9\\ud83d\\ude00\xe2\x80\xa8"}}}'
    script: list[dict[str, Any] | bytes] = [initialize(0), call(1, "echo", {"text": text}), raw_ping]
    direct, shim, _, shim_rec = both(tmp_path, fdaemon, permissive, script)
    assert direct == shim
    assert json.loads(json.loads(shim[1])["result"]["content"][0]["text"])["arguments"]["text"] == text
    forwarded_call = shim_rec[1]
    assert "a\u2028b\u2029c 😀".encode() in forwarded_call and b"\\u0000" in forwarded_call
    assert shim_rec[2] == raw_ping  # escapes kept exactly as the agent wrote them


def test_ping_and_server_requests_with_colliding_ids(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """Server-to-client requests reuse the client's in-flight ids; both directions stay matched."""
    script_head: list[dict[str, Any] | bytes] = [
        initialize(5, "2025-11-25", roots={}, sampling={}, elicitation={}),
        call(0, "hang", {}),
        call(2, "hang", {}),
        call(1, "server_requests", {}),
    ]
    outs = []
    for way in ("direct", "shim"):
        record, fx = tmp_path / f"{way}.record", tmp_path / f"{way}.fx"
        target = scripted_command(record, fx)
        command = target if way == "direct" else shim_command(target, config=fdaemon.home / "permissive.json")
        with Peer(command, fdaemon.env) as peer:
            for message in script_head:
                peer.send(message)
            peer.response(5)
            asked = [peer.recv_until(lambda m: "method" in m)[0] for _ in range(3)]
            assert [(m["id"], m["method"]) for m in asked] == [
                (0, "roots/list"),
                (1, "sampling/createMessage"),
                (2, "elicitation/create"),
            ]
            peer.send(request(3, "tools/list"))  # a client request in the middle of the exchange
            for m in asked:
                peer.send({"jsonrpc": "2.0", "id": m["id"], "result": {"answer": m["method"]}})
            listing, _ = peer.response(3)
            result, _ = peer.response(1)
            peer.send(request(4, "ping"))
            assert peer.response(4)[0]["result"] == {}
            outs.append(json.loads(result["result"]["content"][0]["text"]))
            assert "firewall_confirm" in {t["name"] for t in listing["result"]["tools"]} or way == "direct"
            peer.close()
        received = [json.loads(line) for line in recorded(record)]
        answers = [m for m in received if "method" not in m]
        assert [a["id"] for a in answers] == [0, 1, 2]
    assert (
        outs[0]
        == outs[1]
        == {
            "0": {"answer": "roots/list"},
            "1": {"answer": "sampling/createMessage"},
            "2": {"answer": "elicitation/create"},
        }
    )


def test_subscription_stream_never_completes_and_can_be_cancelled(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """subscriptions/listen stays open while other requests flow; its cancel reaches the server."""
    record, fx = tmp_path / "record", tmp_path / "fx"
    command = shim_command(scripted_command(record, fx), config=permissive)
    with Peer(command, fdaemon.env) as peer:
        peer.send(
            request(
                "listen-1",
                "subscriptions/listen",
                {"_meta": modern_meta(), "notifications": {"toolsListChanged": True}},
            )
        )
        ack = peer.recv()
        changed = peer.recv()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"
        assert peer.ask(call(1, "echo", {}, _meta=modern_meta()))["result"]["isError"] is False
        cancel = notification("notifications/cancelled", {"requestId": "listen-1"})
        peer.send(cancel)
        peer.ask(request(2, "ping"))
        assert peer.close() == 0
    assert jline(cancel) in recorded(record)
    assert not [json.loads(line) for line in peer.raw if json.loads(line).get("id") == "listen-1"]


def test_cancel_of_a_paused_call_withdraws_it_and_stays_here(
    tmp_path: Path, fdaemon: Daemon, guarded: Path
) -> None:
    """A cancel for a paused call never reaches the server, and its pending action is withdrawn."""
    record, fx = tmp_path / "record", tmp_path / "fx"
    with Peer(shim_command(scripted_command(record, fx), config=guarded), fdaemon.env) as peer:
        peer.ask(initialize(0))
        paused = peer.ask(call(1, "delete_thing", {"id": 1}))
        action_id = json.loads(paused["result"]["content"][0]["text"])["action_id"]
        assert action_id in {a["action_id"] for a in fdaemon.pending()}
        peer.send(notification("notifications/cancelled", {"requestId": 1}))
        peer.send(notification("notifications/cancelled", {"requestId": 77}))  # never sent at all
        peer.ask(request(2, "ping"))
        assert action_id not in {a["action_id"] for a in fdaemon.pending()}
        peer.close()
    assert b"notifications/cancelled" not in b"".join(recorded(record))
    assert effects(fx) == []
    events = {r["event"] for r in fdaemon.audit() if r["action_id"] == action_id}
    assert "withdrawn" in events


def test_cancel_of_a_forwarded_call_reaches_the_server(
    tmp_path: Path, fdaemon: Daemon, permissive: Path
) -> None:
    """A cancel for a call the server is working on is forwarded byte for byte."""
    record, fx = tmp_path / "record", tmp_path / "fx"
    with Peer(shim_command(scripted_command(record, fx), config=permissive), fdaemon.env) as peer:
        peer.ask(initialize(0))
        peer.send(call(1, "hang", {}))
        peer.ask(call(2, "echo", {}))  # verdicts come back in order: call 1 was forwarded before call 2
        cancel = (
            b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user"}}'
        )
        peer.send(cancel)
        peer.ask(request(3, "ping"))
        peer.close()
    assert cancel in recorded(record)
