"""Hostile input from the agent, against real Python MCP servers (``mcp`` 2.x and 1.x) behind the shim.

Each case is one line an agent could write to smuggle ``delete_user`` (which the policy pauses) past
the policy, or to wedge the shim. Every case must: get the JSON-RPC answer that is due (an error, or
the honest part's answer), run nothing on the server, and leave the shim serving the next call. The
servers read stdin with Python's universal newlines, so a raw ``\\r`` inside a line would split it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command
from helpers.fidelity import MCP1_PYTHON, MCP1_SERVER, effects
from helpers.mcp_agent import fixture_command
from helpers.wire import Peer, call, initialize, jline, notification

SMUGGLED = jline(call(666, "delete_user", {"id": 666}))
HEAD = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":'
DEEP = 100_000

# (case id, line, expected answer). Answers: ("error", code, id) an error for that id (None: a null id);
# ("result", id) the server's own answer to the honest part; ("batch", ids) an array of errors; ("none",).
CASES: list[tuple[str, bytes, tuple[Any, ...]]] = [
    (
        "cr-splits-a-ping",
        b'{"jsonrpc":"2.0","id":20,"method":"ping","params":{"_meta":{"x":\r' + SMUGGLED + b"\r}}}",
        ("result", 20),
    ),
    ("crlf-line-end", b'{"jsonrpc":"2.0","id":21,"method":"ping"}\r', ("result", 21)),
    (
        "duplicate-method",
        b'{"jsonrpc":"2.0","id":22,"method":"ping","method":"tools/call"}',
        ("error", -32700, 22),
    ),
    (
        "duplicate-name",
        HEAD % 23 + b'{"name":"read_note","name":"delete_user","arguments":{"id":666,"name":"x"}}}',
        ("error", -32700, 23),
    ),
    (
        "case-twin-name",
        HEAD % 24 + b'{"name":"read_note","Name":"delete_user","arguments":{"id":666,"name":"x"}}}',
        ("error", -32600, 24),
    ),
    (
        "go-fold-twin-arguments",
        HEAD % 25 + '{"name":"read_note","arguments":{"name":"x"},"argumentſ":{"id":666}}}'.encode(),
        ("error", -32600, 25),
    ),
    (
        "kelvin-twin-key",
        HEAD % 26 + '{"name":"read_note","arguments":{"name":"x","k":1,"\u212a":2}}}'.encode(),
        ("error", -32600, 26),
    ),
    (
        "nul-twin-name",
        HEAD % 27 + b'{"name":"read_note","name\\u0000":"delete_user","arguments":{"name":"x"}}}',
        ("error", -32600, 27),
    ),
    (
        "case-twin-method",
        b'{"jsonrpc":"2.0","id":28,"method":"ping","Method":"tools/call"}',
        ("error", -32600, 28),
    ),
    (
        "unknown-member-paramf",
        '{"jsonrpc":"2.0","id":29,"method":"ping","paramſ":{}}'.encode(),
        ("error", -32600, 29),
    ),
    (
        "batch-smuggles-a-call",
        b"[" + SMUGGLED + b',{"jsonrpc":"2.0","id":30,"method":"ping"}]',
        ("batch", [666, 30]),
    ),
    ("empty-batch", b"[]", ("error", -32600, None)),
    (
        "upper-case-method",
        b'{"jsonrpc":"2.0","id":31,"method":"TOOLS/CALL","params":{"name":"delete_user"}}',
        ("error", -32600, 31),
    ),
    (
        "zero-width-method",
        b'{"jsonrpc":"2.0","id":32,"method":"tools/call\\u200b","params":{"name":"delete_user"}}',
        ("error", -32600, 32),
    ),
    (
        "fullwidth-method",
        '{"jsonrpc":"2.0","id":33,"method":"ｔｏｏｌｓ/ｃａｌｌ","params":{"name":"delete_user"}}'.encode(),
        ("error", -32600, 33),
    ),
    ("bom", b'\xef\xbb\xbf{"jsonrpc":"2.0","id":34,"method":"ping"}', ("error", -32700, 34)),
    ("trailing-message", b'{"jsonrpc":"2.0","id":35,"method":"ping"} ' + SMUGGLED, ("error", -32700, 35)),
    ("nan", HEAD % 36 + b'{"name":"delete_user","arguments":{"id":NaN}}}', ("error", -32700, 36)),
    ("infinity", HEAD % 37 + b'{"name":"delete_user","arguments":{"id":1e999}}}', ("error", -32700, 37)),
    (
        "huge-integer",
        HEAD % 38 + b'{"name":"read_note","arguments":{"n":' + b"9" * 5000 + b"}}}",
        ("error", -32700, 38),
    ),
    ("lone-surrogate", HEAD % 39 + b'{"name":"read_note\\ud800","arguments":{}}}', ("error", -32602, 39)),
    (
        "invalid-utf8",
        HEAD % 40 + b'{"name":"delete_user\xff","arguments":{"id":666}}}',
        ("error", -32700, 40),
    ),
    (
        "overlong-utf8",
        HEAD % 41 + b'{"name":"delete\xc0\xafuser","arguments":{"id":666}}}',
        ("error", -32700, 41),
    ),
    ("encoded-surrogate", HEAD % 42 + b'{"name":"x\xed\xa0\x80","arguments":{}}}', ("error", -32700, 42)),
    ("not-an-object", b'"tools/call"', ("error", -32600, None)),
    ("garbage", b"\x00\x01 not json at all", ("error", -32700, None)),
    (
        "deep-nesting",
        HEAD % 43 + b'{"name":"delete_user","arguments":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}}",
        ("error", -32700, 43),
    ),
    (
        "unclosed-escaped-quotes",  # was quadratic in the id salvage: hours for a few MB
        HEAD % 51 + b'{"name":"x","arguments":{"a":"' + b'\\"' * 2_000_000,
        ("error", -32700, 51),
    ),
    (
        "huge-id",
        b'{"jsonrpc":"2.0","id":9223372036854775807,"method":"ping"}',
        ("error", -32600, 9223372036854775807),
    ),
    (
        "float-id",
        b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"delete_user"}}',
        ("error", -32600, None),
    ),
    ("bool-id", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', ("error", -32600, None)),
    ("null-params", b'{"jsonrpc":"2.0","id":44,"method":"tools/call","params":null}', ("error", -32600, 44)),
    ("missing-params", b'{"jsonrpc":"2.0","id":45,"method":"tools/call"}', ("error", -32602, 45)),
    ("name-not-a-string", HEAD % 46 + b'{"name":["delete_user"]}}', ("error", -32602, 46)),
    (
        "arguments-not-an-object",
        HEAD % 47 + b'{"name":"delete_user","arguments":[666]}}',
        ("error", -32602, 47),
    ),
    ("method-not-a-string", b'{"jsonrpc":"2.0","id":48,"method":["tools/call"]}', ("error", -32600, 48)),
    (
        "wrong-jsonrpc",
        b'{"jsonrpc":"1.0","id":49,"method":"tools/call","params":{"name":"delete_user"}}',
        ("error", -32600, 49),
    ),
    (
        "call-as-notification",
        b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_user","arguments":{"id":666}}}',
        ("none",),
    ),
    (
        "u2028-in-a-string",
        b'{"jsonrpc":"2.0","id":50,"method":"ping","params":{"_meta":{"x":"\xe2\x80\xa8'
        + SMUGGLED.replace(b'"', b'\\"')
        + b'"}}}',
        ("result", 50),
    ),
]


@pytest.fixture(scope="module", params=["mcp2", "mcp1"])
def session(
    request: pytest.FixtureRequest, fdaemon: Daemon, guarded: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Peer, Path]]:
    """One initialized agent session through the shim to a real Python server, shared by the cases."""
    fx = tmp_path_factory.mktemp(request.param) / "effects"
    if request.param == "mcp2":
        target = fixture_command(fx)
    else:
        if not MCP1_PYTHON.exists():
            pytest.fail(f"{MCP1_PYTHON} is missing: run `make mcp1` (the test command does)")
        target = [str(MCP1_PYTHON), str(MCP1_SERVER), "--effects", str(fx)]
    peer = Peer(shim_command(target, config=guarded), fdaemon.env, stderr=fx.with_name("shim.stderr"))
    peer.ask(initialize(0, "2025-06-18"))
    peer.send(notification("notifications/initialized"))
    yield peer, fx
    # The server exits on the end of its stdin (0), or, slower than the 2 s it is given on a busy
    # host, by the SIGTERM that follows (143): the shutdown sequence as documented, either way.
    assert peer.close() in (0, 128 + signal.SIGTERM)
    assert effects(fx) == []
    smuggled_answers = [m for m in map(json.loads, peer.raw) if isinstance(m, dict) and m.get("id") == 666]
    assert smuggled_answers == []  # (the batch's error array is a list, not an answer from the server)


def answers(peer: Peer, honest_id: int) -> list[Any]:
    """Everything the agent receives up to the answer to the honest call that follows a case."""
    peer.send(call(honest_id, "read_note", {"name": "still-serving"}))
    got: list[Any] = []
    while True:
        msg = json.loads(peer.recv_line())
        if isinstance(msg, dict) and msg.get("id") == honest_id:
            assert msg["result"]["content"][0]["text"] == "note:still-serving"
            return got
        got.append(msg)


@pytest.mark.parametrize(
    ("line", "expected"), [(line, expected) for _, line, expected in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_line(session: tuple[Peer, Path], line: bytes, expected: tuple[Any, ...]) -> None:
    """The due answer arrives, nothing runs on the server, and the next honest call is served."""
    peer, fx = session
    peer.send(line)
    got = answers(peer, 1000 + CASES.index(next(c for c in CASES if c[1] == line)))
    if expected[0] == "none":
        assert got == []
    elif expected[0] == "result":
        assert [(m["id"], "result" in m) for m in got] == [(expected[1], True)]
    elif expected[0] == "batch":
        (batch,) = got
        assert [(e["id"], e["error"]["code"]) for e in batch] == [(i, -32600) for i in expected[1]]
    else:
        (error,) = got
        assert (error["error"]["code"], error["id"]) == (expected[1], expected[2])
    assert effects(fx) == []


def test_oversized_honest_call_passes(session: tuple[Peer, Path]) -> None:
    """A 30 MB call (well past asyncio's 64 KiB and the TypeScript SDK's 10 MiB) is judged and served."""
    peer, _ = session
    big = "x" * (30 * 1024 * 1024)
    reply = peer.ask(call(2000, "read_note", {"name": big}))
    assert reply["result"]["content"][0]["text"] == "note:" + big
