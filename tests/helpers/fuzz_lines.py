"""Hypothesis strategies for the fuzz run: honest MCP traffic, hostile rewrites of it, and raw bytes.

``agent_line(ctx)`` draws one line an agent might send: an honest message (often about ids, codes and
continuation tokens the session has already seen, so cancels, confirms and retries hit something), a
hostile rewrite of one (every parser-differential trick in ``docs/hostile-input.md``), a line from
the seed corpus, possibly mutated, or random bytes. ``server_line(ctx)`` draws what a target might
write: answers to forwarded requests (``input_required`` ones included), its own requests under ids
that collide with the agent's, notifications and garbage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
MODERN = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
NAMES = [
    "get_weather",
    "read_note",
    "delete_user",
    "pay_invoice",
    "deny_this",
    "firewall_confirm",
    "Firewall_Confirm",
    "DELETE_user",
    "ｄｅｌｅｔｅ_user",
    "de\u200blete_user",
    "dеlete_user",
    "get_\u2028x",
]
METHODS = [
    "ping",
    "tools/list",
    "tools/call",
    "tools/call",
    "tools/call",
    "initialize",
    "server/discover",
    "resources/read",
    "prompts/get",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "completion/complete",
]
LOOKALIKES = [
    "TOOLS/CALL",
    "Tools/Call",
    "tools/call\u200b",
    " tools/call",
    "ｔｏｏｌｓ/ｃａｌｌ",
    "tools／call",
    "tools/calL",
]
SMUGGLED = (
    b'{"jsonrpc":"2.0","id":666,"method":"tools/call","params":{"name":"delete_user","arguments":{"id":666}}}'
)
KEY_TWINS = {
    "name": ["Name", "NAME", "name\u0000", "ｎａｍｅ", "nAme"],
    "arguments": ["Arguments", "argumentſ", "ARGUMENTS", "arguments\u0000"],
    "method": ["Method", "METHOD", "method\u0000"],
    "params": ["Params", "paramſ", "PARAMS"],
    "id": ["ID", "Id", "id\u0000"],
    "task": ["tasK", "tasK", "TASK"],
    "_meta": ["_Meta", "_META"],
}


@dataclass
class Context:
    """What the session has seen, so that generated lines refer to it."""

    next_id: int = 1
    ids: list[Any] = field(default_factory=list)  # ids the agent used
    codes: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    forwarded: list[Any] = field(default_factory=list)  # ids the target has seen
    server_ids: list[Any] = field(default_factory=list)  # ids of the target's own requests


def load_corpus() -> list[bytes]:
    """Every seed line in ``tests/fuzz/corpus/*.lines`` (one line each, newline-separated)."""
    lines: list[bytes] = []
    for path in sorted(CORPUS.glob("*.lines")):
        lines += [line for line in path.read_bytes().split(b"\n") if line]
    return lines


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["\u2028", "\u2029", "😀", "\x00", "é", "\u200b", "\r", "\ud800"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def dumps(obj: Any) -> bytes:
    """As a client would write it; a lone surrogate is escaped (a client can send that too)."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode()


@st.composite
def honest(draw: st.DrawFn, ctx: Context) -> bytes:
    """One well-formed message of the kinds an MCP client sends."""
    kind = draw(st.sampled_from(["request"] * 6 + ["cancel", "notify", "response"]))
    if kind == "cancel":
        target = (
            draw(st.sampled_from(ctx.ids)) if ctx.ids and draw(st.booleans()) else draw(st.integers(0, 50))
        )
        return dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": target}})
    if kind == "notify":
        method = draw(
            st.sampled_from(["notifications/initialized", "notifications/progress", "notifications/x"])
        )
        return dumps({"jsonrpc": "2.0", "method": method, "params": {"progressToken": 1, "progress": 1}})
    if kind == "response" and ctx.server_ids:
        sid = draw(st.sampled_from(ctx.server_ids))
        body = {"result": draw(st.dictionaries(st.text(max_size=5), json_scalar, max_size=2))}
        if draw(st.booleans()):
            body = {"error": {"code": -32000, "message": "no"}}
        return dumps({"jsonrpc": "2.0", "id": sid, **body})
    msg_id: Any = ctx.next_id if draw(st.booleans()) else f"r-{ctx.next_id}"
    ctx.next_id += 1
    ctx.ids.append(msg_id)
    method = draw(st.sampled_from(METHODS))
    params: dict[str, Any] | None = None
    if method == "tools/call":
        name = draw(st.sampled_from(NAMES))
        params = {
            "name": name,
            "arguments": draw(st.dictionaries(st.text(max_size=6), json_value, max_size=3)),
        }
        if name == "firewall_confirm":
            params["arguments"] = {"otp": draw(st.sampled_from(ctx.codes)) if ctx.codes else "123456"}
            if ctx.tokens and draw(st.booleans()):
                params["requestState"] = draw(st.sampled_from(ctx.tokens))
                params["inputResponses"] = {"q": {"action": "accept"}}
        if draw(st.booleans()):
            params["_meta"] = {
                "progressToken": draw(st.integers(0, 9)),
                **(MODERN if draw(st.booleans()) else {}),
            }
        if draw(st.integers(0, 9)) == 0:
            params["task"] = {"ttl": 1000}
    elif method == "tools/list":
        params = draw(st.sampled_from([None, {}, {"cursor": None}, {"cursor": ""}, {"cursor": "p2"}]))
    elif draw(st.booleans()):
        params = draw(st.dictionaries(st.text(max_size=6), json_value, max_size=2))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return dumps(msg)


def _twin(line: bytes, draw: st.DrawFn) -> bytes:
    keys = [k for k in KEY_TWINS if f'"{k}":'.encode() in line]
    if not keys:
        return line
    key = draw(st.sampled_from(keys))
    twin = draw(st.sampled_from([key, *KEY_TWINS[key]]))
    value = draw(st.sampled_from([b'"delete_user"', b'{"id":666}', b"666", b"null"]))
    at = line.index(f'"{key}":'.encode())
    return line[:at] + dumps(twin) + b":" + value + b"," + line[at:]


@st.composite
def hostile(draw: st.DrawFn, ctx: Context) -> bytes:
    """An honest message rewritten by one or more parser-differential tricks."""
    line = draw(honest(ctx))
    for _ in range(draw(st.integers(1, 3))):
        trick = draw(
            st.sampled_from(
                [
                    "cr",
                    "cr-smuggle",
                    "twin",
                    "batch",
                    "bom",
                    "trailing",
                    "nan",
                    "huge-id",
                    "deep",
                    "utf8",
                    "surrogate",
                    "u2028",
                    "bytes",
                    "truncate",
                    "lookalike",
                    "types",
                    "crlf",
                ]
            )
        )
        line = _apply(trick, line, draw, ctx)
    return line


def _apply(trick: str, line: bytes, draw: st.DrawFn, ctx: Context) -> bytes:
    at = draw(st.integers(0, len(line)))
    if trick == "cr":
        return line[:at] + b"\r" + line[at:]
    if trick == "crlf":
        return line + b"\r"
    if trick == "cr-smuggle":
        return b'{"jsonrpc":"2.0","id":%d,"method":"ping","params":{"x":\r%b\r}}' % (
            draw(st.integers(0, 99)),
            SMUGGLED,
        )
    if trick == "twin":
        return _twin(line, draw)
    if trick == "batch":
        return b"[" + line + (b"," + SMUGGLED if draw(st.booleans()) else b"") + b"]"
    if trick == "bom":
        return b"\xef\xbb\xbf" + line
    if trick == "trailing":
        return line + draw(st.sampled_from([b" " + SMUGGLED, b"x", b"\x00", b" \t", b"}"]))
    if trick == "nan":
        return (
            line.replace(b'"id":', b'"id":NaN,"x":', 1)
            if draw(st.booleans())
            else line.replace(b"1", b"1e999", 1)
        )
    if trick == "huge-id":
        return line.replace(
            b'"id":', b'"id":%d,"y":' % draw(st.sampled_from([2**53, 2**63, 10**30, -(2**60)])), 1
        )
    if trick == "deep":
        depth = draw(st.sampled_from([50, 900, 5000, 60000]))
        return line.replace(b'"params":', b'"params":' + b"[" * depth + b"]" * depth + b',"z":', 1)
    if trick == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x80", b"\xf4\x90\x80\x80"]))
        return line[:at] + bad + line[at:]
    if trick == "surrogate":
        return line.replace(b'":"', b'":"\\udc00', 1)
    if trick == "u2028":
        return line[:at] + "\u2028".encode() + line[at:]
    if trick == "bytes":
        data = bytearray(line)
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, max(0, len(data) - 1)))
            op = draw(st.sampled_from(["flip", "insert", "delete"]))
            if op == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "insert":
                data.insert(pos, draw(st.sampled_from(b'{}[]",:\\\r\x00\x85 ')))
            elif data:
                del data[pos]
        return bytes(data).replace(b"\n", b"")
    if trick == "truncate":
        return line[:at]
    if trick == "lookalike":
        return line.replace(
            b'"method":"tools/call"', b'"method":' + dumps(draw(st.sampled_from(LOOKALIKES))), 1
        )
    # "types": a wrong type in one field
    field_, value = draw(
        st.sampled_from(
            [
                (b'"params":', b"null"),
                (b'"params":', b"[1]"),
                (b'"name":', b"42"),
                (b'"arguments":', b"[1]"),
                (b'"id":', b"true"),
                (b'"id":', b"1.5"),
                (b'"id":', b"null"),
                (b'"id":', b"{}"),
                (b'"method":', b"7"),
                (b'"jsonrpc":', b'"1.0"'),
            ]
        )
    )
    return line.replace(field_, field_ + value + b',"w":', 1)


@st.composite
def agent_line(draw: st.DrawFn, ctx: Context, corpus: list[bytes]) -> bytes:
    """One line from the agent: honest, hostile, from the corpus (maybe mutated), or random bytes."""
    source = draw(st.sampled_from(["honest"] * 4 + ["hostile"] * 4 + ["corpus"] * 2 + ["random"]))
    if source == "honest":
        return draw(honest(ctx))
    if source == "hostile":
        return draw(hostile(ctx))
    if source == "corpus" and corpus:
        line = draw(st.sampled_from(corpus))
        return _apply("bytes", line, draw, ctx) if draw(st.booleans()) else line
    return draw(st.binary(max_size=64)).replace(b"\n", b"")


@st.composite
def server_line(draw: st.DrawFn, ctx: Context) -> bytes:
    """One line from the target."""
    kind = draw(st.sampled_from(["answer"] * 5 + ["request", "notify", "garbage"]))
    if kind == "answer" and ctx.forwarded:
        msg_id = draw(st.sampled_from(ctx.forwarded))
        shape = draw(st.sampled_from(["text", "error", "input", "input-nostate", "list", "task"]))
        result: dict[str, Any]
        if shape == "error":
            return dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": "x"}})
        if shape == "text":
            result = {
                "content": [{"type": "text", "text": draw(st.text(max_size=10))}],
                "isError": draw(st.booleans()),
            }
        elif shape.startswith("input"):
            result = {
                "resultType": "input_required",
                "inputRequests": {"q": {"method": "elicitation/create"}},
            }
            if shape == "input":
                result["requestState"] = "srv"
        elif shape == "list":
            tools = [
                {"name": n, "annotations": {"readOnlyHint": True}}
                for n in draw(st.lists(st.sampled_from(NAMES), max_size=3))
            ]
            result = {"tools": tools, "nextCursor": draw(st.sampled_from(["", "p2"]))}
        else:
            result = {"task": {"taskId": "t", "status": "working"}}
        return dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})
    if kind == "request":
        sid = draw(st.sampled_from(ctx.ids)) if ctx.ids else 0
        ctx.server_ids.append(sid)
        method = draw(st.sampled_from(["roots/list", "sampling/createMessage", "elicitation/create", "ping"]))
        return dumps({"jsonrpc": "2.0", "id": sid, "method": method, "params": {}})
    if kind == "notify":
        target = draw(st.sampled_from(ctx.ids)) if ctx.ids else 1
        method = draw(
            st.sampled_from(
                ["notifications/progress", "notifications/tools/list_changed", "notifications/cancelled"]
            )
        )
        return dumps(
            {"jsonrpc": "2.0", "method": method, "params": {"requestId": target, "progressToken": 1}}
        )
    return draw(st.binary(max_size=40)).replace(b"\n", b"")
