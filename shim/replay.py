"""An approved call on its way to the server, and the params it is replayed with (see
:mod:`shim.confirm`)."""

from __future__ import annotations

from typing import Any, NamedTuple

from shim import jsonrpc as rpc
from shim.jsonrpc import JsonId

#: Members of a replayed call that belong to the request that carries it, not to the approval.
_TRANSPORT = ("_meta", "inputresponses", "requeststate")
#: ``_meta`` keys a replay takes from the request that carries it: the progress token, trace
#: context, and the keys under the prefixes the MCP specification reserves for itself.
_META_KEYS = frozenset({"progresstoken", "traceparent", "tracestate", "baggage"})


class Replay(NamedTuple):
    """An approved call on its way to the server, under the shim's own id."""

    agent_id: JsonId
    """The id of the agent's ``firewall_confirm``, which gets the answer."""
    action_id: str
    params: bytes
    """The params sent, for the next round of an ``input_required`` answer."""


def transport_meta(meta: Any) -> dict[str, Any] | None:
    """The part of a request's ``_meta`` that belongs to its transport, which an approved call may
    take: the progress token, trace context and the keys under the prefixes MCP reserves
    (``io.modelcontextprotocol/``...). Anything else could carry what the human never saw."""
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if _transport_key(k)}


def _transport_key(key: str) -> bool:
    folded = key.lower()
    if folded in _META_KEYS:
        return True
    prefix, slash, _ = folded.partition("/")
    labels = prefix.split(".")
    # The spec reserves prefixes whose second label is "modelcontextprotocol" or "mcp".
    return bool(slash) and len(labels) >= 2 and labels[1] in ("modelcontextprotocol", "mcp")


def replay_params(frozen: dict[str, Any], meta: Any, task: Any) -> dict[str, Any]:
    """The frozen call as it is replayed under a confirm.

    Name, arguments and everything else are as intercepted. Transport metadata (the transport
    part of ``_meta``: the progress token, the stateless protocol version) comes from the
    confirm; so does task augmentation when the confirm asks for it, else the intercepted call's
    stands. Keys that fold to those are dropped from the frozen call, so the result has no
    case-variant twins.
    """
    params = {
        k: v
        for k, v in frozen.items()
        if (folded := rpc.fold_key(k)) != "_meta" and (task is None or folded != "task")
    }
    kept = transport_meta(meta)
    if kept is not None:
        params["_meta"] = kept
    if task is not None:
        params["task"] = task
    return params
