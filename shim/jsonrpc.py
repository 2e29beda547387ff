"""Strict JSON-RPC parsing of what the agent sends, and the replies the shim makes itself.

The policy judges the message as *this* parser sees it, so anything another parser could read
differently is refused before it is judged: invalid UTF-8, duplicate keys at any depth, NaN and
Infinity, trailing data, non-objects, batches, unknown top-level members (some parsers match keys
case-insensitively, so ``"Method"`` could be a second method), and method names that only look
like ``tools/call`` after case folding.
"""

from __future__ import annotations

import json
import math
from typing import Any

JsonId = int | str

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: Implementation-defined server errors live in -32000..-32099.
TARGET_GONE = -32001

_MEMBERS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})


class Rejected(Exception):
    """A message the shim will not forward. ``msg_id`` is set when an error reply is owed."""

    def __init__(self, code: int, message: str, msg_id: JsonId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} overflows a double")
    return value


_strict = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)


def loads_strict(line: bytes) -> Any:
    """Parse one line the strict way.

    Raises:
        Rejected: with :data:`PARSE_ERROR` for anything that is not exactly one valid JSON value.
    """
    try:
        text = line.decode("utf-8")  # strict: invalid UTF-8 and encoded surrogates are refused
        return _strict.decode(text)
    except RecursionError:
        raise Rejected(PARSE_ERROR, "Parse error: nesting too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(PARSE_ERROR, f"Parse error: {exc}", _salvage_id(line)) from None


def _salvage_id(line: bytes) -> JsonId | None:
    """The id of a refused request, read leniently, so the agent gets an error instead of a hang.

    Only ever used to address that error: nothing read this way is judged or forwarded.
    """
    try:
        msg = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    if isinstance(msg, dict) and "method" in msg and valid_id(msg.get("id")):
        salvaged: JsonId = msg["id"]
        return salvaged
    return None


def valid_id(value: object) -> bool:
    """MCP request ids are strings or integers (never null, never a boolean or a float)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_message(msg: object) -> dict[str, Any]:
    """Check the envelope of a parsed message; return it as a dict.

    Raises:
        Rejected: :data:`INVALID_REQUEST` for a batch, a non-object, a bad ``jsonrpc`` or ``id``,
            an unknown top-level member, or a ``method`` that is not a string.
    """
    if isinstance(msg, list):
        raise Rejected(INVALID_REQUEST, "Invalid Request: batches are not supported")
    if not isinstance(msg, dict):
        raise Rejected(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    msg_id = msg.get("id")
    owed = msg_id if valid_id(msg_id) and "method" in msg else None
    unknown = msg.keys() - _MEMBERS
    if unknown:
        raise Rejected(INVALID_REQUEST, f"Invalid Request: unknown member {sorted(unknown)[0]!r}", owed)
    if msg.get("jsonrpc") != "2.0":
        raise Rejected(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', owed)
    if "id" in msg and not valid_id(msg_id):
        raise Rejected(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if "method" in msg:
        if not isinstance(msg["method"], str):
            raise Rejected(INVALID_REQUEST, "Invalid Request: method must be a string", owed)
        if "result" in msg or "error" in msg:
            raise Rejected(INVALID_REQUEST, "Invalid Request: a request cannot carry a result", owed)
        params = msg.get("params")
        if "params" in msg and not isinstance(params, dict):
            raise Rejected(INVALID_REQUEST, "Invalid Request: params must be an object", owed)
    elif "id" not in msg or ("result" in msg) == ("error" in msg):
        raise Rejected(INVALID_REQUEST, "Invalid Request: neither a request nor a response")
    return msg


def looks_like_tools_call(method: str) -> bool:
    """True for method names that only a lenient peer would read as ``tools/call``."""
    if method == "tools/call":
        return False
    folded = "".join(ch for ch in method if ch.isprintable() and not ch.isspace()).casefold()
    if folded == "tools/call":
        return True
    if not method.isascii():
        import unicodedata

        return unicodedata.normalize("NFKC", folded).casefold() == "tools/call"
    return False


def dumps(obj: object) -> bytes:
    """Compact JSON, UTF-8 as sent (no ``\\uXXXX`` inflation of non-ASCII text).

    Raises:
        UnicodeEncodeError: the object holds a lone surrogate, which no honest peer sends.
    """
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_line(msg_id: JsonId | None, code: int, message: str) -> bytes:
    """A JSON-RPC error response."""
    return dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
#: The first stateless protocol version; its results must say ``resultType``.
FIRST_STATELESS = "2026-07-28"


def is_stateless(params: dict[str, Any]) -> bool:
    """True if a request carries a 2026-07-28-or-later protocol version in its ``_meta``."""
    meta = params.get("_meta")
    version = meta.get(MODERN_VERSION_KEY) if isinstance(meta, dict) else None
    return isinstance(version, str) and version >= FIRST_STATELESS


def tool_error_line(msg_id: JsonId, text: str, stateless: bool) -> bytes:
    """A ``tools/call`` result with ``isError: true`` and one text block, in the request's era."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if stateless:
        result["resultType"] = "complete"
    return dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})
