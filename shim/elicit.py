"""Approval through the MCP client's own dialog (``elicitation/create``), when the policy allows it.

A paused call may be shown to the human in the client's dialog, with its tool and frozen
arguments, when three things hold: the daemon's verdict says the policy allows it for this
server and client (``elicit``, from ``approve_via_elicitation``: off by default), the client
declared form elicitation (legacy: in ``initialize``; 2026-07-28: in this very request's
``_meta``), and the arguments fit the dialog whole (:data:`SHOWN_LIMIT`; what the human approves
is all of what runs, or the dialog is not used). The human's answer goes to the daemon
(:class:`~daemon.protocol.ElicitationAnswer`), which alone approves or denies; an approved call
runs the daemon's frozen params, as after a code.

Legacy era: the call is held open (as for a console approval, :class:`shim.holding.Holding`) and
the client gets an ``elicitation/create`` request under an id only the shim chooses
(:data:`ASK_ID_PREFIX` and 64 random bits); the answer to it is never forwarded to the server.
Accept: the real result answers the original request. Decline or cancel: an ``isError`` result
that says so. An error, or no answer within the hold: the usual PAUSED answer (the code works).

2026-07-28: the call is answered at once with ``input_required`` carrying the elicitation request
and a ``requestState`` token of the shim's own (random, single use, this process only); the
client's retry brings the answer in ``inputResponses``. Whatever else the retry carries (its
tool, its arguments) is not what runs: the frozen call is.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, NamedTuple

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import Confirmations
from shim.jsonrpc import JsonId
from shim.replay import replay_params

log = logging.getLogger("mcp-action-firewall")

#: The prefix of the ids of the shim's own ``elicitation/create`` requests to the client.
ASK_ID_PREFIX = "mcp-action-firewall/ask/"
#: The prefix of the ``requestState`` of a call answered ``input_required`` for the dialog.
STATE_PREFIX = "mcp-action-firewall/elicit/"
#: The key of the dialog in ``inputRequests`` and ``inputResponses``.
INPUT_KEY = "mcp-action-firewall/approve"
#: Characters of escaped arguments a dialog shows at most; a bigger call is not offered there.
SHOWN_LIMIT = 4096
#: Bound on the 2026-07-28 dialogs remembered (oldest forgotten first).
_MAX_ELICITED = 256
_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
#: Top-level params of a call the dialog can show whole (anything else would run unseen).
_SHOWABLE = frozenset({"name", "arguments", "_meta"})


class Elicited(NamedTuple):
    """A 2026-07-28 call answered ``input_required`` with the dialog, waiting for the retry."""

    action_id: str
    name: str
    params_json: bytes
    verdict: p.Verdict


def form_elicitation(capabilities: Any) -> bool:
    """Whether client capabilities declare form elicitation (an empty ``elicitation`` object
    means form, as before modes existed)."""
    if not isinstance(capabilities, dict):
        return False
    elicitation = capabilities.get("elicitation")
    if not isinstance(elicitation, dict):
        return False
    return "form" in elicitation or "url" not in elicitation


def visible(text: str) -> str:
    """``text`` with everything but printable ASCII and newlines escaped (``\\u202e``...): no
    control sequence, invisible or look-alike character reaches the dialog."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n" or 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def dialog_message(name: str, params_json: bytes, verdict: p.Verdict) -> str | None:
    """What the dialog says: the tool and all of its frozen arguments, escaped; ``None`` when
    they do not fit :data:`SHOWN_LIMIT` or the call carries more than a tool and arguments."""
    if len(params_json) > 4 * SHOWN_LIMIT:
        return None
    params = json.loads(params_json)
    if not isinstance(params, dict) or any(key not in _SHOWABLE for key in params):
        return None
    arguments = json.dumps(params.get("arguments") or {}, ensure_ascii=True, indent=2)
    if len(arguments) > SHOWN_LIMIT:
        return None
    return visible(
        "The MCP Action Firewall paused a tool call and asks you to approve it.\n\n"
        f"Tool: {json.dumps(name, ensure_ascii=True)}\n"
        f"Arguments (exactly what will run):\n{arguments}\n\n"
        f"Why it was paused: {verdict.reason}\n\n"
        f"Accept runs it once, now, with exactly these arguments. Decline and it does not run. "
        f"(Action {verdict.action_id}; it is also in the firewall console.)"
    )


def _dialog(message: str) -> dict[str, Any]:
    # No fields: the answer is the choice itself (accept or decline), nothing typed.
    return {"message": message, "requestedSchema": {"type": "object", "properties": {}}}


def declined_text(name: str, action_id: str) -> str:
    """What the agent is told when the human declined in the client's dialog."""
    return (
        f"The user declined the call to '{name}' in their MCP client's dialog (action {action_id}). "
        "It did not run and nothing was sent to the server. Do not retry it unless the user asks."
    )


class Elicitations(Confirmations):
    """The dialog half of :class:`shim.firewall.Firewall`, which provides the state below."""

    _client_elicits: bool
    #: The shim's own elicitation requests to the client -> the action each one asks about.
    _asks: dict[str, str]
    #: 2026-07-28 dialogs waiting for the client's retry, by their requestState token.
    _elicited: dict[str, Elicited]

    def _note_initialize(self, params: dict[str, Any]) -> None:
        """The legacy client says in ``initialize`` whether it shows elicitation dialogs."""
        self._client_elicits = form_elicitation(params.get("capabilities"))

    def _elicit(
        self, msg_id: JsonId, name: str, params_json: bytes, stateless: bool, verdict: p.Verdict
    ) -> bool:
        """Ask the human in the client's dialog about a paused call (True), when the policy, the
        client and the call's size allow it; False to pause it as usual."""
        if not verdict.elicit or not verdict.action_id:
            return False
        message = dialog_message(name, params_json, verdict)
        if message is None:
            return False
        if stateless:
            meta = json.loads(params_json).get("_meta")
            if not isinstance(meta, dict) or not form_elicitation(meta.get(_CAPABILITIES_KEY)):
                return False
            token = STATE_PREFIX + os.urandom(16).hex()
            self._elicited[token] = Elicited(verdict.action_id, name, params_json, verdict)
            if len(self._elicited) > _MAX_ELICITED:
                del self._elicited[next(iter(self._elicited))]
            request = {"method": "elicitation/create", "params": _dialog(message)}
            result = {
                "resultType": "input_required",
                "inputRequests": {INPUT_KEY: request},
                "requestState": token,
            }
            self._client.write_line(rpc.dumps_reply({"jsonrpc": "2.0", "id": msg_id, "result": result}))
            return True
        if not self._client_elicits or not self._start_hold(
            msg_id, name, params_json, stateless, verdict, always=True
        ):
            return False
        ask_id = ASK_ID_PREFIX + os.urandom(8).hex()
        self._holding[verdict.action_id].ask = ask_id
        self._asks[ask_id] = verdict.action_id
        ask = {"jsonrpc": "2.0", "id": ask_id, "method": "elicitation/create", "params": _dialog(message)}
        self._client.write_line(rpc.dumps_reply(ask))
        return True

    def _end_ask(self, ask_id: str) -> None:
        """The shim no longer waits for this dialog's answer (the hold ended): tell the client."""
        if self._asks.pop(ask_id, None) is None:
            return
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": ask_id, "reason": "the firewall no longer waits for this answer"},
        }
        self._client.write_line(rpc.dumps_reply(cancel))

    # -- legacy: the answer to the shim's own request --------------------------------------

    def _on_client_answer(self, msg: dict[str, Any]) -> bool:
        """Take the client's answer to one of the shim's dialogs (True: it is never forwarded)."""
        ask_id = msg.get("id")
        if not isinstance(ask_id, str) or not ask_id.startswith(ASK_ID_PREFIX):
            return False
        action_id = self._asks.pop(ask_id, None)
        held = self._holding.get(action_id) if action_id is not None else None
        if action_id is None or held is None:
            log.debug("dropped an answer to a dialog the firewall no longer waits for: %r", ask_id)
            return True
        held.ask = None
        result = msg.get("result")
        choice = result.get("action") if isinstance(result, dict) else None
        if choice == "accept":
            self._request(
                lambda rid: p.ElicitationAnswer(rid, action_id, True),
                lambda reply, why: self._guarded(action_id, lambda: self._accepted(action_id, reply)),
            )
            return True
        self._take_hold(action_id)
        if choice in ("decline", "cancel"):
            self._client.write_line(
                rpc.tool_error_line(held.msg_id, declined_text(held.name, action_id), held.stateless)
            )
            self._tell_declined(action_id)
            return True
        self._notify(p.Held(action_id, 0.0))  # an error, or nonsense: the code path, as today
        self._answer_paused(held.msg_id, held.name, held.params_json, held.stateless, held.verdict)
        return True

    def _accepted(self, action_id: str, reply: p.Message | None) -> None:
        """The daemon's word on an accepted dialog of a held call."""
        if isinstance(reply, p.Confirmed) and reply.ok:
            held = self._take_hold(action_id)
            if held is None:  # the hold ran out (or was cancelled) meanwhile: the agent was answered
                self._record(action_id, "not_run", "the approval came after the call stopped being held")
                return
            frozen = json.loads(reply.params)
            params = replay_params(frozen, frozen.get("_meta"), None)
            self._run_approved(held.msg_id, params, action_id, held.stateless)
            return
        held = self._take_hold(action_id)
        if held is not None:  # refused (or no answer): the code path, as today
            self._notify(p.Held(action_id, 0.0))
            self._answer_paused(held.msg_id, held.name, held.params_json, held.stateless, held.verdict)

    def _guarded(self, action_id: str, run: Any) -> None:
        try:
            run()
        except Exception as exc:  # fail closed: the held call is told it is paused
            log.error("internal error on the dialog of %s: %r", action_id, exc)
            held = self._take_hold(action_id)
            if held is not None:
                self._answer_paused(held.msg_id, held.name, held.params_json, held.stateless, held.verdict)

    def _tell_declined(self, action_id: str) -> None:
        def done(reply: p.Message | None, why: str) -> None:
            if not isinstance(reply, p.Ack):
                log.warning("firewalld did not record the decline of %s: %s", action_id, why or reply)

        self._request(lambda rid: p.ElicitationAnswer(rid, action_id, False), done)

    # -- 2026-07-28: the retry that carries the answer -------------------------------------

    def _on_elicited_retry(self, msg_id: JsonId, params: dict[str, Any], token: str, stateless: bool) -> None:
        """The client's retry of a call answered ``input_required`` with the dialog."""
        found = self._elicited.pop(token, None)
        if found is None:
            text = (
                "The firewall does not know this requestState (it was used already, or belongs to "
                "another session): nothing was run. Call the tool again to start over."
            )
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))
            return
        responses = params.get("inputResponses")
        answer = responses.get(INPUT_KEY) if isinstance(responses, dict) else None
        choice = answer.get("action") if isinstance(answer, dict) else None
        if choice in ("decline", "cancel"):
            self._client.write_line(
                rpc.tool_error_line(msg_id, declined_text(found.name, found.action_id), stateless)
            )
            self._tell_declined(found.action_id)
            return
        if choice != "accept":  # no answer: the code path, as today
            self._answer_paused(msg_id, found.name, found.params_json, stateless, found.verdict)
            return
        meta, task = params.get("_meta"), params.get("task")

        def handle(reply: p.Message | None, why: str) -> None:
            cancelled = self._judging.pop(msg_id, False)
            if isinstance(reply, p.Confirmed) and reply.ok:
                if cancelled:
                    self._record(
                        reply.action_id, "not_run", "the agent cancelled its retry before the call was sent"
                    )
                    return
                frozen = json.loads(reply.params)
                self._run_approved(msg_id, replay_params(frozen, meta, task), reply.action_id, stateless)
                return
            if cancelled:
                return
            if isinstance(reply, p.Error) and reply.code == p.E_FORBIDDEN:  # still waits: the code path
                self._answer_paused(msg_id, found.name, found.params_json, stateless, found.verdict)
                return
            text = (
                reply.message if isinstance(reply, p.Error) else f"the firewall daemon did not answer ({why})"
            )
            text = f"The approval in the client's dialog was not taken: {text}. Nothing was run."
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

        self._ask(
            msg_id, found.name, stateless, lambda rid: p.ElicitationAnswer(rid, found.action_id, True), handle
        )
