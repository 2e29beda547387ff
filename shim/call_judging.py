"""The shim's ``tools/call`` judging: each call is asked about, then forwarded, paused or refused
(see :mod:`shim.firewall`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import debug
from shim.elicit import STATE_PREFIX, Elicitations
from shim.jsonrpc import JsonId
from shim.leases import Leases
from shim.listing import CONFIRM_TOOL
from shim.paused import paused_text

log = logging.getLogger("mcp-action-firewall")

#: Bound on what the shim remembers of paused calls (oldest forgotten first).
_MAX_PAUSED = 4096


class CallJudging(Elicitations):
    """The ``tools/call`` half of :class:`shim.firewall.Firewall`, which provides the state below."""

    _leases: Leases | None
    _paused: dict[JsonId, str]

    def _on_tools_call(self, msg_id: JsonId, params: dict[str, Any], raw: object) -> None:
        if not isinstance(raw, dict) or not isinstance(params.get("name"), str):
            self._client.write_line(
                rpc.error_line(msg_id, rpc.INVALID_PARAMS, "Invalid params: tools/call needs a tool name")
            )
            return
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            self._client.write_line(
                rpc.error_line(msg_id, rpc.INVALID_PARAMS, "Invalid params: arguments must be an object")
            )
            return
        try:
            params_json = rpc.dumps(params)
        except UnicodeEncodeError:
            self._client.write_line(
                rpc.error_line(msg_id, rpc.INVALID_PARAMS, "Invalid params: lone surrogate in a string")
            )
            return
        name: str = params["name"]
        stateless = rpc.is_stateless(params)
        if name == CONFIRM_TOOL:
            self._on_confirm(msg_id, params, stateless)
            return
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(STATE_PREFIX):  # the answer of the client's dialog
            self._on_elicited_retry(msg_id, params, state, stateless)
            return
        leases = self._leases
        if leases is not None and leases.use(name, arguments, params_json):

            def ask_instead() -> None:  # the daemon was lost as the record left: no lease holds
                self._inflight.pop(msg_id, None)
                self._judge(msg_id, name, params_json, stateless)

            self._forward_call(msg_id, params_json, lambda line: leases.defer_line(line, ask_instead))
            return
        self._judge(msg_id, name, params_json, stateless)

    def _judge(self, msg_id: JsonId, name: str, params_json: bytes, stateless: bool) -> None:
        """Ask the daemon about a call; it is forwarded if the verdict is ``allow``."""
        self._ask(
            msg_id,
            name,
            stateless,
            lambda rid: p.Decide(rid, params_json),
            lambda reply, why: self._on_verdict(msg_id, name, params_json, stateless, reply, why),
        )

    def _on_verdict(
        self,
        msg_id: JsonId,
        name: str,
        params_json: bytes,
        stateless: bool,
        reply: p.Message | None,
        why: str,
        *,
        run: Any = None,
    ) -> None:
        cancelled = self._judging.pop(msg_id, False)
        if isinstance(reply, p.Verdict) and reply.action == p.ALLOW:
            if not cancelled:
                if run is not None:
                    run()
                else:
                    self._forward_call(msg_id, params_json)
            return
        if isinstance(reply, p.Verdict) and reply.action == p.APPROVE:
            if cancelled:
                self._notify(p.Withdraw(reply.action_id))
                return
            if run is None and self._elicit(msg_id, name, params_json, stateless, reply):
                return  # asked in the client's own dialog
            if not self._start_hold(msg_id, name, params_json, stateless, reply):
                self._answer_paused(msg_id, name, params_json, stateless, reply)
            return
        if cancelled:
            return
        if isinstance(reply, p.Verdict):
            text = f"Blocked by the MCP Action Firewall: {reply.reason} The call to '{name}' did not run."
        elif isinstance(reply, p.Error):
            text = f"Blocked by the MCP Action Firewall: {reply.message} The call to '{name}' did not run."
        else:
            text = (
                f"Blocked by the MCP Action Firewall: {why or 'no decision'}. The call to '{name}' "
                "did not run and nothing was sent to the server. The firewall daemon (firewalld) must "
                "be running for tool calls to be judged; tell the user, then try again."
            )
        self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

    def _answer_paused(
        self, msg_id: JsonId, name: str, params_json: bytes, stateless: bool, reply: p.Verdict
    ) -> None:
        """Tell the agent its call is paused, and how to have it approved with the code."""
        self._paused[msg_id] = reply.action_id
        if len(self._paused) > _MAX_PAUSED:
            del self._paused[next(iter(self._paused))]
        text = paused_text(name, params_json, reply)
        self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

    def _internal_error(self, msg_id: JsonId, name: str, stateless: bool, exc: Exception) -> None:
        log.error("internal error on the call to %r: %r", name, exc, exc_info=debug())
        self._judging.pop(msg_id, None)
        text = f"The MCP Action Firewall failed on the call to '{name}' ({exc!r}); it did not run."
        self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

    def _forward_call(self, msg_id: JsonId, params_json: bytes, write: Any = None) -> None:
        line = b'{"jsonrpc":"2.0","id":%b,"method":"tools/call","params":%b}' % (
            b"%d" % msg_id if type(msg_id) is int else rpc.dumps(msg_id),  # ints: no json.dumps
            params_json,
        )
        alive = self.target_alive
        if alive:
            self._inflight[msg_id] = "tools/call"
        if not alive or not (write or self._target.write_line)(line):
            self._answer_gone(msg_id)

    if TYPE_CHECKING:

        def _answer_gone(self, msg_id: JsonId) -> None: ...
