"""Strict JSON-RPC parsing of what the agent sends, and the replies the shim makes itself.

The policy judges the message as *this* parser sees it, so anything another parser could read
differently is refused before it is judged: invalid UTF-8, duplicate keys at any depth, keys that
are duplicates once case-folded (Go's ``encoding/json`` matches ``"Name"``, ``"NAME"`` and even
``"nameſ"``-style folds to a ``name`` field, last one winning: CVE-2026-27896), keys that are
duplicates up to a NUL (C parsers), NaN and Infinity, trailing data, non-objects, batches, unknown
top-level members, request ids outside the range every peer can hold exactly, and method names
that only look like ``tools/call`` after case folding.

Line splitting is the other differential: MCP frames on ``\n`` only, but Python's universal
newlines (the ``mcp`` SDK's stdio servers) and Node's ``readline`` also end a line at ``\r``.
:func:`unsplittable` makes a line that a strict parser accepted safe to forward to such a peer.
"""

from __future__ import annotations

import json
import math
import re
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
#: The largest integer id that every peer holds exactly (JavaScript numbers are doubles).
MAX_SAFE_ID = 2**53 - 1


class Rejected(Exception):
    """A message the shim will not forward, and who is owed an error for it.

    ``msg_id``: a refused request's id; the agent gets the error. ``answer_id``: a refused
    *response* to one of the server's requests; the server gets the error, so that it does not
    wait for ever. ``anonymous``: nothing could be read, and it may have been a request; JSON-RPC
    owes an error with a null id. ``batch_ids``: the requests of a refused batch.
    """

    def __init__(
        self,
        code: int,
        message: str,
        msg_id: JsonId | None = None,
        *,
        answer_id: JsonId | None = None,
        anonymous: bool = False,
        batch_ids: tuple[JsonId, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id
        self.answer_id = answer_id
        self.anonymous = anonymous
        self.batch_ids = batch_ids


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    count = len(pairs)
    if len(obj) != count:
        _check_duplicates(pairs, str)
    if count > 1:
        # Fast path for the common case, ASCII keys: one join and one lower() per object.
        keys = "\x1f".join(obj)
        if keys.isascii() and "\0" not in keys:
            low = keys.lower()
            if low == keys:  # distinct keys, all already folded
                return obj
            folded = low.split("\x1f")
            if len(folded) == count and len(set(folded)) == count:  # (a key holding \x1f: slow path)
                return obj
        _check_duplicates(pairs, fold_key)
    return obj


def fold_key(key: str) -> str:
    """The key as the most lenient peer may match it: case-folded (``ſ`` is ``s``, ``K`` is ``k``),
    NFKC-normalised, and cut at the first NUL."""
    if not key.isascii():
        import unicodedata

        key = unicodedata.normalize("NFKC", key.casefold()).casefold()
    key = key.lower()
    nul = key.find("\0")
    return key if nul < 0 else key[:nul]


class _Twins(ValueError):
    """Two keys of one object that a lenient peer would take for the same key: valid JSON, but
    not a message anyone may send (an Invalid Request rather than a Parse error)."""


def _check_duplicates(pairs: list[tuple[str, Any]], fold: Any) -> None:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        folded = fold(key)
        if folded in seen:
            if seen[folded] == key:
                raise ValueError(f"duplicate key {key[:60]!r}")
            raise _Twins(f"keys {seen[folded][:60]!r} and {key[:60]!r} differ only in case or form")
        seen[folded] = key


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
        raise _parse_error(line, "Parse error: nesting too deep") from None
    except _Twins as exc:
        raise _parse_error(line, f"Invalid Request: {exc}", INVALID_REQUEST) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _parse_error(line, f"Parse error: {exc}") from None


def _parse_error(line: bytes, message: str, code: int = PARSE_ERROR) -> Rejected:
    kind, msg_id = salvage(line)
    return _addressed(code, message, kind, msg_id)


def _addressed(code: int, message: str, kind: str, msg_id: JsonId | None) -> Rejected:
    if kind == "request":
        return Rejected(code, message, msg_id)
    if kind == "response":
        return Rejected(code, message, answer_id=msg_id)
    return Rejected(code, message, anonymous=kind == "unknown")


# A string token runs to its closing quote or to the end of the window (possessively): the scan
# never restarts inside a string, so it stays linear on hostile input such as \"\"\"... unclosed.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[{}\[\]]')
#: How much of a refused line is scanned for its id: ids come first in every serialiser we know.
_SCAN_WINDOW = 64 * 1024


def salvage(line: bytes) -> tuple[str, JsonId | None]:
    """What a refused line was, read leniently: ``request``, ``response`` (with its id),
    ``notification`` or ``unknown``.

    Only ever used to address an error reply: nothing read this way is judged or forwarded.
    What even a lenient parse refuses (too deep, a BOM, trailing data, a huge number) is scanned
    for the first value's top-level ``"id"`` and ``"method"``.
    """
    try:
        msg = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        try:
            return _scan_top_level(line)
        except Exception:  # only ever a best effort: never let addressing an error fail
            return "unknown", None
    return classify(msg)


def classify(msg: object) -> tuple[str, JsonId | None]:
    """``(kind, id)`` of a parsed message, as :func:`salvage` reports it."""
    if not isinstance(msg, dict):
        return "unknown", None
    msg_id = msg.get("id")
    if not valid_id(msg_id):
        return ("notification", None) if "method" in msg and "id" not in msg else ("unknown", None)
    if "method" in msg:
        return "request", msg_id
    return "response", msg_id


def _scan_top_level(line: bytes) -> tuple[str, JsonId | None]:
    depth = 0
    found: object = None
    method = False
    for match in _TOKENS.finditer(line, 0, _SCAN_WINDOW):
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                break  # the end of the first value: anything after it is not this message
        elif depth == 1:
            value = _MEMBER_VALUE.match(line, match.end())
            if value is None:
                continue
            method = method or token == b'"method"'
            if token == b'"id"' and value.group(1) and found is None:
                try:
                    found = json.loads(value.group(1).decode("utf-8", "replace"))
                except ValueError:
                    break
    if valid_id(found):
        salvaged: JsonId = found  # type: ignore[assignment]
        return ("request" if method else "response"), salvaged
    return ("notification" if method else "unknown"), None


_MEMBER_VALUE = re.compile(rb'\s*:\s*(-?\d{1,16}(?![\d.eE])|"(?:[^"\\]|\\.){0,200}")?')


def valid_id(value: object) -> bool:
    """MCP request ids are strings or integers (never null, never a boolean or a float)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def unsplittable(line: bytes) -> bytes:
    """``line`` without the carriage returns that a universal-newline reader would split it at.

    Only for lines the strict parser accepted: there a raw ``\r`` can only be whitespace between
    tokens (inside strings it is refused), so removing it keeps the meaning exactly. A trailing
    ``\r`` is kept: followed by the shim's ``\n`` it ends the line for every reader.
    """
    if line.find(b"\r", 0, len(line) - 1) < 0:
        return line
    return line.replace(b"\r", b"")


def check_message(msg: object) -> dict[str, Any]:
    """Check the envelope of a parsed message; return it as a dict.

    Raises:
        Rejected: :data:`INVALID_REQUEST` for a batch, a non-object, a bad ``jsonrpc`` or ``id``,
            an unknown top-level member, a ``method`` that is not a string, or ``params`` that
            are not an object.
    """
    if isinstance(msg, list):
        owed = tuple(i for kind, i in map(classify, msg) if kind == "request" and i is not None)
        raise Rejected(
            INVALID_REQUEST,
            "Invalid Request: batches are not supported; send one message per line",
            batch_ids=owed,
            anonymous=not msg,
        )
    if not isinstance(msg, dict):
        raise Rejected(INVALID_REQUEST, "Invalid Request: a message must be a JSON object", anonymous=True)
    if not msg.keys() <= _MEMBERS:
        unknown = sorted(msg.keys() - _MEMBERS)[0]
        raise _addressed(INVALID_REQUEST, f"Invalid Request: unknown member {unknown!r}", *classify(msg))
    if msg.get("jsonrpc") != "2.0":
        raise _addressed(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', *classify(msg))
    msg_id = msg.get("id")
    method = msg.get("method")
    if msg_id is not None or "id" in msg:
        if not valid_id(msg_id):
            raise Rejected(
                INVALID_REQUEST, "Invalid Request: id must be a string or an integer", anonymous=True
            )
        if method is not None or "method" in msg:
            if type(msg_id) is int and not -MAX_SAFE_ID <= msg_id <= MAX_SAFE_ID:
                # A JavaScript peer would round it and answer under another id: the client would hang.
                raise Rejected(
                    INVALID_REQUEST, "Invalid Request: integer id out of the range ±(2**53-1)", msg_id
                )
            if type(msg_id) is str and not msg_id.isascii() and not _encodable(msg_id):
                raise Rejected(INVALID_REQUEST, "Invalid Request: lone surrogate in the id", msg_id)
    if method is not None or "method" in msg:
        if type(method) is not str:
            raise _addressed(INVALID_REQUEST, "Invalid Request: method must be a string", *classify(msg))
        if "result" in msg or "error" in msg:
            raise _addressed(
                INVALID_REQUEST, "Invalid Request: a request cannot carry a result", *classify(msg)
            )
        if "params" in msg and type(msg["params"]) is not dict:
            raise _addressed(INVALID_REQUEST, "Invalid Request: params must be an object", *classify(msg))
    elif "id" not in msg or ("result" in msg) == ("error" in msg):
        raise _addressed(INVALID_REQUEST, "Invalid Request: neither a request nor a response", *classify(msg))
    return msg


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    return _compact(obj).encode("utf-8")


#: json.dumps(ensure_ascii=False, separators=(",", ":")) without building an encoder per call.
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps_reply(obj: object) -> bytes:
    """:func:`dumps` for the shim's own replies: a lone surrogate (in an id the agent sent) is
    written as the ``\\uXXXX`` escape it arrived as, instead of failing."""
    try:
        return dumps(obj)
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def error_line(msg_id: JsonId | None, code: int, message: str) -> bytes:
    """A JSON-RPC error response."""
    return dumps_reply({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


def batch_error_line(ids: tuple[JsonId, ...], code: int, message: str) -> bytes:
    """The JSON-RPC answer to a refused batch: an array with one error per request in it."""
    errors = [{"jsonrpc": "2.0", "id": i, "error": {"code": code, "message": message}} for i in ids]
    return dumps_reply(errors)


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
    return dumps_reply({"jsonrpc": "2.0", "id": msg_id, "result": result})
