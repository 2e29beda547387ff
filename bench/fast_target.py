"""A minimal, fast MCP server over stdio (newline-delimited JSON-RPC), stdlib only.

It answers ``initialize``, ``ping``, ``tools/list`` and ``tools/call`` for three tools:
``get_value`` (a small result), ``get_blob`` (``size`` ASCII characters, for throughput) and
``delete_item`` (a small result; the firewall's default policy pauses it). Its own cost is kept
as low as possible so that what a benchmark sees is the cost of whatever sits in front of it:
results are built from byte templates, and blobs are built once per size.

Run as ``python bench/fast_target.py``; it exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import sys

_TOOLS = [
    {
        "name": "get_value",
        "description": "Return a small value.",
        "inputSchema": {"type": "object", "properties": {"key": {"type": "string"}}},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "get_blob",
        "description": "Return `size` ASCII characters.",
        "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "delete_item",
        "description": "Pretend to delete an item.",
        "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "annotations": {"destructiveHint": True},
    },
]
_LIST = json.dumps({"tools": _TOOLS}, separators=(",", ":")).encode()
_VALUE = b'{"content":[{"type":"text","text":"value"}],"isError":false}'
_DELETED = b'{"content":[{"type":"text","text":"deleted"}],"isError":false}'
_blobs: dict[int, bytes] = {}


def _blob(size: int) -> bytes:
    body = _blobs.get(size)
    if body is None:
        body = _blobs[size] = b'{"content":[{"type":"text","text":"' + b"x" * size + b'"}],"isError":false}'
    return body


def _result(method: str, params: dict[str, object]) -> bytes | None:
    if method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "get_value":
            return _VALUE
        if name == "get_blob" and isinstance(args, dict):
            return _blob(int(args.get("size", 0)))
        if name == "delete_item":
            return _DELETED
        return None
    if method == "initialize":
        version = params.get("protocolVersion") or "2025-06-18"
        info = {"name": "fast-target", "version": "1.0"}
        return json.dumps(
            {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": info}
        ).encode()
    if method == "tools/list":
        return _LIST
    if method == "ping":
        return b"{}"
    return None


def _write(parts: list[bytes]) -> None:
    """Write the parts as one line with ``writev``: a 10 MB blob is never copied to frame it."""
    pending = [memoryview(p) for p in parts]
    while pending:
        written = os.writev(1, pending)
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if written:
            pending[0] = pending[0][written:]


def main() -> None:
    """Serve until stdin closes."""
    stdin = sys.stdin.buffer
    for line in stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        msg_id = msg.get("id")
        if msg_id is None or "method" not in msg:
            continue  # a notification, or an answer to a request we never make
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(msg_id).encode()
        result = _result(msg["method"], msg.get("params") or {})
        if result is None:
            _write([head, b',"error":{"code":-32601,"message":"Method not found"}}\n'])
        else:
            _write([head, b',"result":', result, b"}\n"])


if __name__ == "__main__":
    main()
