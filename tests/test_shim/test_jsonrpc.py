"""The strict parser: everything another JSON parser could read differently is refused."""

from __future__ import annotations

import pytest

from shim import jsonrpc as rpc


def check(line: bytes) -> dict[str, object]:
    """Parse and check one line as the shim does."""
    return rpc.check_message(rpc.loads_strict(line))


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2}}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"x"} {"jsonrpc":"2.0"}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":1e999}}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"\xff"}', rpc.PARSE_ERROR),
        (b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80"}', rpc.PARSE_ERROR),
        (b"\xef\xbb\xbf{}", rpc.PARSE_ERROR),
        (b"[" * 100_000 + b"]" * 100_000, rpc.PARSE_ERROR),
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]', rpc.INVALID_REQUEST),
        (b'"tools/call"', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}', rpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1}', rpc.INVALID_REQUEST),
    ],
)
def test_hostile_lines_are_rejected(line: bytes, code: int) -> None:
    """Each parser-differential or malformed shape is refused with the right JSON-RPC error."""
    with pytest.raises(rpc.Rejected) as info:
        check(line)
    assert info.value.code == code


def test_rejection_owes_an_answer_only_with_a_request_id() -> None:
    """An envelope error names the request id when there is one to answer."""
    with pytest.raises(rpc.Rejected) as info:
        check(b'{"jsonrpc":"2.0","id":"r1","method":"ping","extra":1}')
    assert info.value.msg_id == "r1"


def test_escaped_method_is_the_same_method() -> None:
    """JSON escapes are decoded as every parser decodes them, so an escaped tools/call is a tools/call."""
    msg = check(b'{"jsonrpc":"2.0","id":1,"method":"tools\\/c\\u0061ll","params":{"name":"x"}}')
    assert msg["method"] == "tools/call"


@pytest.mark.parametrize(
    "method", ["Tools/Call", "TOOLS/CALL", "tools/call\u200b", "ｔｏｏｌｓ/ｃａｌｌ", " tools/call"]
)
def test_lookalike_methods_are_spotted(method: str) -> None:
    """Method names a lenient server might fold into tools/call are recognised."""
    assert rpc.looks_like_tools_call(method)


def test_honest_methods_are_not_lookalikes() -> None:
    """Ordinary methods pass."""
    for method in ("tools/call", "tools/list", "ping", "notifications/cancelled"):
        assert not rpc.looks_like_tools_call(method)


def test_dumps_keeps_unicode_as_sent() -> None:
    """Non-ASCII text is not inflated into \\u escapes; control characters stay escaped."""
    assert rpc.dumps({"t": "naïve 😀 \u2028 \x00"}) == '{"t":"naïve 😀 \u2028 \\u0000"}'.encode()


def test_dumps_refuses_lone_surrogates() -> None:
    """A lone surrogate cannot be written as UTF-8, so it is never forwarded."""
    with pytest.raises(UnicodeEncodeError):
        rpc.dumps(rpc.loads_strict(b'{"n":"\\ud800"}'))


def test_stateless_results_say_their_type() -> None:
    """Results for 2026-07-28 requests carry resultType; older ones do not."""
    assert b'"resultType":"complete"' in rpc.tool_error_line(1, "x", True)
    assert b"resultType" not in rpc.tool_error_line(1, "x", False)
    assert rpc.is_stateless({"_meta": {rpc.MODERN_VERSION_KEY: "2026-07-28"}})
    assert not rpc.is_stateless({"_meta": {rpc.MODERN_VERSION_KEY: "2025-11-25"}})
