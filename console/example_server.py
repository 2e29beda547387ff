"""A tiny stdlib MCP server for the demo: a pretend payments API with one safe and two dangerous tools."""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [
    {
        "name": "get_balance",
        "description": "Read the account balance.",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "refund_payment",
        "description": "Refund a charge.",
        "inputSchema": {
            "type": "object",
            "properties": {"charge": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["charge", "amount"],
        },
        "annotations": {"destructiveHint": True},
    },
    {
        "name": "delete_customer",
        "description": "Delete a customer and all their data.",
        "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        "annotations": {"destructiveHint": True},
    },
]


def _call(name: str, args: dict[str, Any]) -> str:
    if name == "get_balance":
        return "balance: 1,024.00 EUR"
    if name == "refund_payment":
        return f"refunded {args.get('amount')} EUR on charge {args.get('charge')}"
    if name == "delete_customer":
        return f"deleted customer {args.get('id')}"
    raise KeyError(name)


def _answer(msg: dict[str, Any]) -> dict[str, Any] | None:
    method, params = msg.get("method"), msg.get("params") or {}
    if "id" not in msg:
        return None
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "demo-payments", "version": "1.0"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        try:
            text = _call(params.get("name", ""), params.get("arguments") or {})
            result = {"content": [{"type": "text", "text": text}]}
        except KeyError:
            result = {"content": [{"type": "text", "text": "unknown tool"}], "isError": True}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def main() -> None:
    """Serve newline-delimited JSON-RPC on stdin/stdout until stdin closes."""
    for line in sys.stdin:
        reply = _answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
