"""The target's side of the bookkeeping: which response a line is, and the ``tools/list`` rewrite.

Responses pass untouched except ``tools/list`` results, which gain ``firewall_confirm`` on the
first page of a listing and lose any server tool posing as it on every page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection
from typing import Any

from shim import jsonrpc as rpc

log = logging.getLogger("mcp-action-firewall")

CONFIRM_TOOL = "firewall_confirm"
CONFIRM_TOOL_DEF: dict[str, Any] = {
    "name": CONFIRM_TOOL,
    "title": "Confirm a paused action",
    "description": (
        "Approve an action that the MCP Action Firewall paused. Call this ONLY with the approval "
        "code that the user typed in the chat after reading it in their firewall console. Never "
        "guess or make up a code: wrong codes are counted and lock the paused action."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "otp": {
                "type": "string",
                "description": "The approval code exactly as the user typed it.",
            }
        },
        "required": ["otp"],
    },
    "annotations": {"readOnlyHint": False, "destructiveHint": False, "openWorldHint": False},
}

#: Responses over this size are not parsed just to learn their id (see :func:`response_id`).
_PARSE_LIMIT = 256 * 1024
_SCALAR_ID = rb'(-?\d{1,30}|"(?:[^"\\\r\n]|\\.){0,200}")'
_TAIL_ID = re.compile(rb',\s*"id"\s*:\s*' + _SCALAR_ID + rb'\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
#: How a line starts: ``{``, maybe an id with ``"jsonrpc":"2.0"`` before or after it (sorted keys put it
#: after), then the member that says what the line is.
_JSONRPC = rb'(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?'
_HEAD = re.compile(
    rb"\{\s*"
    + _JSONRPC
    + rb'(?:"id"\s*:\s*'
    + _SCALAR_ID
    + rb"\s*,\s*"
    + _JSONRPC
    + rb')?"(result|error|method)"\s*:'
)
NOT_A_RESPONSE: Any = object()


def response_id(line: bytes, exact: bool = False) -> Any:
    """The id of a response line, or :data:`NOT_A_RESPONSE` (requests and notifications included).

    The id is read from the head of the line, where nearly every serialiser puts it, or, for a
    big line (a 10 MB file, which would cost more to parse than to relay), from its tail; only
    if it is in neither place is the line parsed. ``exact`` parses whatever the size: the ends may not be
    what the agent reads (a line that repeats ``"id"`` is read with its last one), so the caller
    asks for it whenever a wrong id could cost more than bookkeeping (a tools/list page or an
    approved call in flight).
    """
    if not exact:
        # The head says what the line is for nearly every server (``{"jsonrpc":"2.0","id":N,
        # "result":``): parsing a 60 KB result only to learn its id cost more than relaying it.
        shape = head_shape(line)
        if shape is not None and (shape[0] == "method" or shape[1] is not NOT_A_RESPONSE):
            return NOT_A_RESPONSE if shape[0] == "method" else shape[1]
        if len(line) > _PARSE_LIMIT:
            match = _TAIL_ID.search(line, len(line) - 512)
            if match:
                return json.loads(match.group(1))
    try:
        # What json.loads(line) does for a line that starts with "{", without its encoding sniffing.
        msg = _plain.decode(line.decode("utf-8", "surrogatepass")) if line[:1] == b"{" else json.loads(line)
    except (ValueError, RecursionError):
        return NOT_A_RESPONSE
    if not isinstance(msg, dict) or "method" in msg or not rpc.valid_id(msg.get("id")):
        return NOT_A_RESPONSE
    return msg["id"]


_plain = json.JSONDecoder()


def tail_id(tail: bytes) -> Any:
    """The id at the end of a response line (where JavaScript serialisers put it), or NOT_A_RESPONSE."""
    match = _TAIL_ID.search(tail)
    return json.loads(match.group(1)) if match else NOT_A_RESPONSE


def head_shape(head: bytes) -> tuple[str, Any] | None:
    """What the beginning of a line says it is, for lines too big to parse (see :mod:`shim.streaming`).

    Returns the first member after the optional ``jsonrpc`` and ``id`` (``"result"``, ``"error"``
    or ``"method"``) and the id if it came before it (else :data:`NOT_A_RESPONSE`); None for any
    other beginning. A ``method`` makes it the server's request or notification, whatever follows.
    """
    match = _HEAD.match(head)
    if match is None:
        return None
    raw_id, member = match.groups()
    if raw_id is None:
        return member.decode(), NOT_A_RESPONSE
    digits = raw_id.lstrip(b"-")
    if raw_id[:1] != b'"' and (digits[:1] != b"0" or digits == b"0"):  # an integer JSON allows
        return member.decode(), int(raw_id)
    try:
        return member.decode(), json.loads(raw_id)
    except ValueError:  # an escape that JSON does not have: not a line to take apart
        return None


def _fold(name: str) -> str:
    if name.isascii():
        return name.lower()
    import unicodedata

    kept = "".join(ch for ch in unicodedata.normalize("NFKC", name) if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", kept.casefold())


#: The members of a tool definition that firewalld pins (see ``daemon/pins.py``).
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def parse_tools_page(line: bytes) -> tuple[dict[str, Any], list[Any]] | None:
    """A tools/list result and its tools, less any server tool posing as ``firewall_confirm``;
    None if the line is not such a result (it is then relayed as it came)."""
    try:
        msg = json.loads(line)
        tools = msg["result"]["tools"]
        if not isinstance(tools, list):
            return None
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    kept = [t for t in tools if not (isinstance(t, dict) and _fold(str(t.get("name", ""))) == CONFIRM_TOOL)]
    if len(kept) != len(tools):
        log.warning("the server lists its own %r tool; it is hidden behind the firewall's", CONFIRM_TOOL)
    return msg, kept


def tool_definitions(tools: list[Any]) -> list[bytes]:
    """What firewalld pins of each listed tool that has a name: its definition as JSON text."""
    out = []
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            picked = {k: tool[k] for k in PINNED_FIELDS if k in tool}
            try:
                out.append(json.dumps(picked, ensure_ascii=True, separators=(",", ":")).encode())
            except (ValueError, RecursionError):  # cannot happen for what json.loads made; hide nothing
                continue
    return out


def finish_tools_page(
    msg: dict[str, Any], tools: list[Any], first_page: bool, hidden: Collection[str]
) -> bytes:
    """The page the agent gets: ``tools`` less the ``hidden`` names, with ``firewall_confirm``
    added to the first page. Everything else in it (``nextCursor``, an empty-string one
    included, ``_meta``, ``resultType``) is kept as it was."""
    if hidden:
        tools = [t for t in tools if not (isinstance(t, dict) and t.get("name") in hidden)]
    if first_page:
        tools = [*tools, CONFIRM_TOOL_DEF]
    msg["result"]["tools"] = tools
    return rpc.dumps_reply(msg)


def rewrite_tools_list(line: bytes, first_page: bool) -> tuple[bytes, list[dict[str, Any]] | None]:
    """Add ``firewall_confirm`` to the first page of a tools/list result; drop impostors from all pages.

    Also returns each listed tool's name and annotations, which the daemon's policy may use.
    """
    page = parse_tools_page(line)
    if page is None:
        return line, None
    msg, kept = page
    listed = [
        {"name": t["name"], "annotations": t["annotations"] if isinstance(t.get("annotations"), dict) else {}}
        for t in kept
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]
    return finish_tools_page(msg, kept, first_page, ()), listed
