"""The ``firewall_confirm`` side of the shim: approved calls, their replays and their continuations.

A paused call is answered at once with :func:`paused_text` (which never holds a code: the daemon
never sends one to a shim). ``firewall_confirm`` sends the agent's code to the daemon; on success
the frozen call is replayed under the confirm's id (:func:`replay_params`). If the server answers
the replay ``input_required`` (2026-07-28), the server's ``requestState`` is swapped for a
continuation token the shim remembers; the agent's retry (the same confirm, with a new id and
``inputResponses``) brings the token back and runs the approved call's next round without a new
approval, and can only ever run the approved tool and arguments. Tokens are random, single use,
and live in this process only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.jsonrpc import JsonId
from shim.listing import CONFIRM_TOOL

log = logging.getLogger("mcp-action-firewall")

#: Past this size a paused call's arguments are shown to the agent as a preview only.
_PREVIEW = 4096
#: The prefix of the ``requestState`` the shim hands out for an approved call's next round.
CONTINUATION_PREFIX = "mcp-action-firewall/continue/"
#: Bound on the continuations remembered (oldest forgotten first).
_MAX_CONTINUATIONS = 256
#: Members of a replayed call that belong to the request that carries it, not to the approval.
_TRANSPORT = ("_meta", "inputresponses", "requeststate")


class Writer(Protocol):
    """Where lines go: the relay's output streams in production, a list in tests."""

    def write_line(self, line: bytes) -> bool: ...


class Link(Protocol):
    """The daemon connection: :class:`shim.daemon_link.DaemonLink` in production."""

    def request(self, make: Any, callback: Any) -> None: ...

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None: ...


class Confirmations:
    """The confirm half of :class:`shim.firewall.Firewall`, which provides the state and methods below."""

    _client: Writer
    _judging: dict[JsonId, bool]
    _continuations: dict[str, tuple[str, bytes, Any]]

    def _forward_call(self, msg_id: JsonId, params_json: bytes, action_id: str | None = None) -> None:
        raise NotImplementedError

    def _notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        raise NotImplementedError

    def _request(self, make: Any, callback: Any) -> None:
        raise NotImplementedError

    def _internal_error(self, msg_id: JsonId, name: str, stateless: bool, exc: Exception) -> None:
        raise NotImplementedError

    def _on_confirm(self, msg_id: JsonId, params: dict[str, Any], stateless: bool) -> None:
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(CONTINUATION_PREFIX):
            self._continue(msg_id, params, state, stateless)
            return
        otp = (params.get("arguments") or {}).get("otp")
        if not isinstance(otp, str | int) or isinstance(otp, bool) or not str(otp).strip():
            text = (
                'firewall_confirm needs the approval code as {"otp": "<code>"}. Ask the user for the '
                "code shown in their firewall console; do not guess it."
            )
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))
            return
        code = "".join(str(otp).split()).replace("-", "")
        meta, task = params.get("_meta"), params.get("task")
        self._ask(
            msg_id,
            CONFIRM_TOOL,
            stateless,
            lambda rid: p.Confirm(rid, code),
            lambda reply, why: self._on_confirmed(msg_id, meta, task, stateless, reply, why),
        )

    def _ask(
        self,
        msg_id: JsonId,
        tool: str,
        stateless: bool,
        make: Callable[[int], p.Message],
        handle: Callable[[p.Message | None, str], None],
    ) -> None:
        """Ask the daemon about a call the agent is waiting on; ``handle`` gets the answer.

        Whatever ``handle`` raises becomes an error for that call (fail closed), never an exception
        in the daemon link.
        """
        self._judging[msg_id] = False

        def callback(reply: p.Message | None, why: str) -> None:
            try:
                handle(reply, why)
            except Exception as exc:
                self._internal_error(msg_id, tool, stateless, exc)

        self._request(make, callback)

    def _on_confirmed(
        self, msg_id: JsonId, meta: Any, task: Any, stateless: bool, reply: p.Message | None, why: str
    ) -> None:
        cancelled = self._judging.pop(msg_id, False)
        if isinstance(reply, p.Confirmed) and reply.ok:
            if cancelled:
                detail = "not run: the agent cancelled its confirm before the call could be sent"
                self._notify(p.Outcome(reply.action_id, False, detail))
                return
            frozen = json.loads(reply.params)
            if not isinstance(frozen, dict):
                raise TypeError("the daemon's frozen params are not an object")
            self._forward_call(msg_id, rpc.dumps(replay_params(frozen, meta, task)), reply.action_id)
            return
        if cancelled:
            return
        if isinstance(reply, p.Confirmed | p.Error):
            text = reply.message
        else:
            text = f"The firewall could not check the code: {why}. Nothing was run; try again shortly."
        self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

    def _continue(self, msg_id: JsonId, params: dict[str, Any], token: str, stateless: bool) -> None:
        """The agent's retry of an approved call that the server answered ``input_required``."""
        found = self._continuations.pop(token, None)
        if found is None:
            text = (
                "The firewall does not know this continuation (it was used already, or belongs to "
                "another session): nothing was run. Call the tool again to start over."
            )
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))
            return
        action_id, sent, server_state = found
        base = {k: v for k, v in json.loads(sent).items() if rpc.fold_key(k) not in _TRANSPORT}
        if "_meta" in params:
            base["_meta"] = params["_meta"]
        if "inputResponses" in params:
            base["inputResponses"] = params["inputResponses"]
        if server_state is not None:
            base["requestState"] = server_state
        self._forward_call(msg_id, rpc.dumps(base), action_id)

    def _finish_replay(self, replay: tuple[str, bytes], line: bytes) -> bytes:
        """Audit an approved call's answer; turn an ``input_required`` one into a continuation."""
        action_id, sent = replay
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            self._notify(p.Outcome(action_id, False, "unparsable answer"))
            return line
        result = msg.get("result") if isinstance(msg, dict) else None
        if isinstance(result, dict) and result.get("resultType") == "input_required":
            token = CONTINUATION_PREFIX + os.urandom(16).hex()
            self._continuations[token] = (action_id, sent, result.get("requestState"))
            if len(self._continuations) > _MAX_CONTINUATIONS:
                del self._continuations[next(iter(self._continuations))]
            result["requestState"] = token
            detail = "input_required: the server asked for more input; the retry continues this approval"
            self._notify(p.Outcome(action_id, True, detail))
            return rpc.dumps_reply(msg)
        ok = isinstance(result, dict) and not result.get("isError", False)
        error = msg.get("error") if isinstance(msg, dict) else None
        detail = "ok" if ok else json.dumps(error or "isError")[:500]
        self._notify(p.Outcome(action_id, ok, detail))
        return line


def replay_params(frozen: dict[str, Any], meta: Any, task: Any) -> dict[str, Any]:
    """The frozen call as it is replayed under a confirm.

    Name, arguments and everything else are as intercepted. Transport metadata (``_meta``: the
    progress token, the stateless protocol version) comes from the confirm; so does task
    augmentation when the confirm asks for it, else the intercepted call's stands. Keys that fold
    to those are dropped from the frozen call, so the result has no case-variant twins.
    """
    params = {
        k: v
        for k, v in frozen.items()
        if (folded := rpc.fold_key(k)) != "_meta" and (task is None or folded != "task")
    }
    if meta is not None:
        params["_meta"] = meta
    if task is not None:
        params["task"] = task
    return params


def paused_text(name: str, params_json: bytes, verdict: p.Verdict) -> str:
    """The agent's instructions for a paused call. It never contains the code: the daemon never
    sends a code to a shim, so there is nothing here that could leak it."""
    arguments: Any
    if len(params_json) <= _PREVIEW:
        arguments = json.loads(params_json).get("arguments", {})
    else:
        arguments = f"({len(params_json)} bytes; see the firewall console for the full arguments)"
    minutes = max(1, round((verdict.expires_at - _now()) / 60)) if verdict.expires_at else 5
    payload = {
        "status": "PAUSED_FOR_APPROVAL",
        "action_id": verdict.action_id,
        "message": (
            f"The call to '{name}' was paused by the MCP Action Firewall and has NOT run: {verdict.reason}"
        ),
        "action": {"tool": name, "arguments": arguments},
        "instruction": (
            f"Ask the user to approve it. Show them the tool and arguments above, and ask them to read "
            f"the approval code for action {verdict.action_id} in their firewall console (the "
            f"`firewall-console` command) and type it here. Then call the `{CONFIRM_TOOL}` tool with "
            '{"otp": "<the code>"}. Never guess a code: wrong codes are counted and lock the action. '
            f"The code expires in about {minutes} minute(s). If the user declines, do not retry."
        ),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _now() -> float:
    import time

    return time.time()


def wire_text(value: object) -> str:
    """``value`` as text that can go on the wire (a lone surrogate becomes ``?``)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def debug() -> bool:
    """Whether tracebacks belong in the log (only at -vv: never a traceback to a user otherwise)."""
    return log.isEnabledFor(logging.DEBUG)
