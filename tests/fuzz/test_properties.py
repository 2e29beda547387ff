"""Properties of the shim's framing, parsing and message handling, for any input Hypothesis can find."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from daemon import protocol as p
from helpers.fuzzing import FakeDaemon, Pipe, go_fold
from shim import jsonrpc as rpc
from shim.firewall import CONFIRM_TOOL, Firewall, rewrite_tools_list
from shim.framing import LinePart, LineSplitter, LineTooLong

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # no lone surrogates: honest text
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)


def _distinct_folds(d: dict[str, Any]) -> bool:
    return len({rpc.fold_key(k) for k in d}) == len(d)


json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4).filter(_distinct_folds)
    ),
    max_leaves=20,
)
objects = st.dictionaries(text, json_values, max_size=5).filter(_distinct_folds)
methods = st.sampled_from(
    ["ping", "tools/list", "resources/read", "prompts/get", "initialize", "server/discover", "x/y"]
)
ids = st.integers(-(2**53) + 1, 2**53 - 1) | text


def encode(obj: Any, ascii_only: bool) -> bytes:
    """How different clients write the same message: raw UTF-8, or everything escaped."""
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode()


# -- parsing ------------------------------------------------------------------------------------


@FAST
@given(objects, st.booleans())
def test_honest_json_is_never_refused(obj: dict[str, Any], ascii_only: bool) -> None:
    """Any JSON object without twin keys parses to itself, whichever way the client escaped it."""
    assert rpc.loads_strict(encode(obj, ascii_only)) == obj


def test_twin_keys_holding_the_fast_path_separator_are_refused() -> None:
    """Keys that contain the separator of the parser's fast path are still compared exactly."""
    with pytest.raises(rpc.Rejected):
        rpc.loads_strict(b'{"x\\u001fy":1,"X\\u001fY":2}')
    assert rpc.loads_strict(b'{"x\\u001fy":1,"x":2,"y":3}') == {"x\x1fy": 1, "x": 2, "y": 3}


@FAST
@given(objects.filter(bool), st.data())
def test_twin_keys_are_always_refused(obj: dict[str, Any], data: st.DataObject) -> None:
    """Adding a key that a lenient peer would take for an existing one is always refused."""
    key = data.draw(st.sampled_from(sorted(obj)))
    twin = data.draw(
        st.sampled_from([key, key.upper(), key.lower(), key.swapcase(), key + "\x00", key.title()])
    )
    line = encode(obj, False)[:-1] + b"," + encode(twin, False) + b":1}"
    if go_fold(twin) == go_fold(key):
        with pytest.raises(rpc.Rejected):
            rpc.loads_strict(line)


@FAST
@given(objects, st.lists(st.integers(0, 10_000), max_size=6))
def test_unsplittable_keeps_meaning_and_removes_inner_cr(obj: dict[str, Any], cuts: list[int]) -> None:
    """Carriage returns between tokens are dropped; the message means the same; a clean line is untouched."""
    clean = json.dumps(obj, separators=(",\t", ":\t")).encode()  # raw tabs only between tokens
    assert rpc.unsplittable(clean) is clean
    spaces = [i for i, byte in enumerate(clean) if byte == 0x09]
    assume(spaces)
    line = bytearray(clean)
    for cut in sorted({spaces[c % len(spaces)] for c in cuts}, reverse=True):
        line[cut : cut + 1] = b"\r"
    safe = rpc.unsplittable(bytes(line))
    assert b"\r" not in safe[:-1]
    assert rpc.loads_strict(safe) == rpc.loads_strict(bytes(line)) == obj


@FAST
@given(st.binary(max_size=200))
def test_parser_never_raises_anything_but_rejected(line: bytes) -> None:
    """Whatever the bytes, parsing either succeeds or raises Rejected (which owes at most one reply)."""
    try:
        rpc.check_message(rpc.loads_strict(line))
    except rpc.Rejected as exc:
        assert sum((exc.msg_id is not None, bool(exc.batch_ids), exc.anonymous)) <= 1


# -- framing ------------------------------------------------------------------------------------


def split(chunks: list[bytes], limit: int) -> list[bytes | str]:
    """What the shim's line splitter makes of a stream delivered in these chunks (too long: "too long")."""
    splitter = LineSplitter(limit)
    out: list[bytes | LineTooLong] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    out += splitter.end()
    return [line if isinstance(line, bytes) else "too long" for line in out]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=3000).map(lambda b: b.replace(b"\n", b"")), max_size=12), st.data())
def test_lines_survive_any_chunking(lines: list[bytes], data: st.DataObject) -> None:
    """However the reads split the stream, the splitter yields exactly the lines, \\r and U+2028 and all."""
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert split(chunks, 1 << 20) == lines


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=3000).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.integers(1, 500),
    st.data(),
)
def test_streamed_lines_survive_any_chunking(
    lines: list[bytes], stream_after: int, data: st.DataObject
) -> None:
    """Streaming every line offered, however the reads split the stream, relays exactly its bytes, and
    each streamed line's tail is its own last bytes."""
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    splitter = LineSplitter(1 << 20, stream_after)
    out, line_start = bytearray(), 0
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for item in splitter.feed(stream[a:b]):
            if isinstance(item, LinePart):
                out += item.data
                if item.last:
                    assert item.tail == bytes(out[line_start:])[-4096:]
                    out += b"\n"
            else:
                assert isinstance(item, bytes)
                out += item + b"\n"
            if out.endswith(b"\n"):
                line_start = len(out)
        if splitter.offer() is not None:
            for part in splitter.stream():
                out += part
    assert splitter.end() == []
    assert bytes(out) == stream


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=10), st.integers(1, 200), st.integers(1, 64))
def test_over_long_lines_are_reported_once_each(sizes: list[int], limit: int, chunk: int) -> None:
    """Each line over the limit is reported once, whatever the reads; every other line arrives intact."""
    lines = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    stream = b"".join(line + b"\n" for line in lines)
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    assert split(chunks, limit) == [line if len(line) <= limit else "too long" for line in lines]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=500).map(lambda b: b.replace(b"\n", b"")))
def test_last_line_without_newline_is_kept(tail: bytes) -> None:
    """A peer that exits right after writing does not lose its last message."""
    assert split([b"first\n" + tail], 1 << 20) == [b"first", *([tail] if tail else [])]


# -- message handling ---------------------------------------------------------------------------


def rig() -> tuple[Firewall, Pipe, Pipe, FakeDaemon]:
    client, target, daemon = Pipe(), Pipe(), FakeDaemon()
    return Firewall(client, target, daemon), client, target, daemon


@FAST
@given(ids, methods, objects, st.booleans())
def test_other_requests_pass_byte_for_byte(
    msg_id: Any, method: str, params: dict[str, Any], ascii_only: bool
) -> None:
    """Any request that is not a tools/call reaches the target exactly as sent; the shim says nothing."""
    fw, client, target, daemon = rig()
    line = encode({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}, ascii_only)
    fw.on_client_line(line)
    assert (target.lines, client.lines, daemon.pending) == ([line], [], [])


@FAST
@given(ids, text, objects, st.sampled_from(["allow", "deny", "approve", "none", "error"]), st.booleans())
def test_a_call_runs_only_if_allowed_and_exactly_as_judged(
    msg_id: Any, name: str, arguments: dict[str, Any], verdict: str, ascii_only: bool
) -> None:
    """A tools/call reaches the target only after an allow, as judged; otherwise it gets one answer."""
    assume(name != CONFIRM_TOOL)
    fw, client, target, daemon = rig()
    params = {"name": name, "arguments": arguments}
    fw.on_client_line(
        encode({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}, ascii_only)
    )
    assert target.lines == []
    ((decide, callback),) = daemon.pending
    assert isinstance(decide, p.Decide) and json.loads(decide.params) == params
    if verdict == "allow":
        callback(p.Verdict(decide.rid, p.ALLOW, "ok", "r"), "")
    elif verdict in ("deny", "approve"):
        callback(p.Verdict(decide.rid, verdict, "no", "r", "A-1", 0.0, 3), "")
    elif verdict == "error":
        callback(p.Error(decide.rid, p.E_INTERNAL, "boom"), "")
    else:
        callback(None, "timeout")
    if verdict == "allow":
        (line,) = target.lines
        assert line == b'{"jsonrpc":"2.0","id":%b,"method":"tools/call","params":%b}' % (
            rpc.dumps(msg_id),
            decide.params,
        )
        assert client.lines == []
    else:
        assert target.lines == []
        (reply,) = [json.loads(line) for line in client.lines]
        assert reply["id"] == msg_id and reply["result"]["isError"] is True


@FAST
@given(ids, text, st.booleans())
def test_a_cancel_before_the_verdict_means_it_never_runs(msg_id: Any, name: str, cancel_first: bool) -> None:
    """Cancelled while being judged: not forwarded, and the cancel does not reach the target either."""
    assume(name != CONFIRM_TOOL)
    fw, client, target, daemon = rig()
    fw.on_client_line(
        encode({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {"name": name}}, False)
    )
    fw.on_client_line(
        encode(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": msg_id}}, False
        )
    )
    ((decide, callback),) = daemon.pending
    callback(p.Verdict(decide.rid, p.ALLOW if cancel_first else p.APPROVE, "ok", "r", "A-9"), "")
    assert target.lines == [] and client.lines == []
    if not cancel_first:
        assert daemon.notes == [p.Withdraw("A-9")]


@FAST
@given(
    st.lists(
        st.fixed_dictionaries({"name": text}, optional={"annotations": st.just({"readOnlyHint": True})}),
        max_size=6,
    ),
    st.sampled_from([None, "", "p2"]),
    st.sampled_from([None, "", "next"]),
)
def test_tools_list_gains_confirm_once_per_listing(
    tools: list[dict[str, Any]], cursor: Any, next_cursor: Any
) -> None:
    """firewall_confirm is added to first pages only, exactly once; tools and cursors are otherwise kept."""
    result: dict[str, Any] = {"tools": tools}
    if next_cursor is not None:
        result["nextCursor"] = next_cursor
    line, _ = rewrite_tools_list(encode({"jsonrpc": "2.0", "id": 1, "result": result}, False), cursor is None)
    got = json.loads(line)["result"]
    names = [t["name"] for t in got["tools"]]
    honest = [t["name"] for t in tools if go_fold(t["name"]) != CONFIRM_TOOL and t["name"] != CONFIRM_TOOL]
    assert names.count(CONFIRM_TOOL) == (1 if cursor is None else 0)
    assert [n for n in names if n != CONFIRM_TOOL] == [n for n in honest if n != CONFIRM_TOOL]
    assert got.get("nextCursor") == next_cursor


@FAST
@given(ids, st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")))
def test_target_lines_reach_the_agent_untouched(msg_id: Any, body: bytes) -> None:
    """Whatever the target writes (answers, its own requests, garbage) reaches the agent as written."""
    fw, client, target, _ = rig()
    fw.on_client_line(encode({"jsonrpc": "2.0", "id": msg_id, "method": "ping"}, False))
    answer = encode({"jsonrpc": "2.0", "id": msg_id, "result": {}}, False)
    for line in (body, answer):
        fw.on_target_line(line)
    assert client.lines == [line for line in (body, answer) if line.strip()]
