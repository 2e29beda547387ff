"""What the shim does with each message: judge, pause, confirm, relay.

No I/O of its own: it is handed two line writers (to the agent and to the target) and a link to
the daemon, so tests can drive it in memory. Every method is called from the shim's one loop
thread (:mod:`shim.loop`), so its tables need no lock, and none of them raises: a message that
breaks something is answered with an error and the shim goes on serving.

Agent to target, each line is parsed strictly (see :mod:`shim.jsonrpc`); what cannot be judged is
never forwarded. ``tools/call`` goes to the daemon and only the re-serialised, judged message is
forwarded; everything else is forwarded byte for byte (less any carriage return inside the line,
which some servers would split it at). Target to agent, lines pass untouched except ``tools/list``
results (see :mod:`shim.listing`) and the answers to approved calls (see :mod:`shim.confirm`); a
big line that is neither may be relayed as it arrives instead of whole (see :mod:`shim.streaming`).
"""

from __future__ import annotations

import logging
from typing import Any

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.call_judging import CallJudging
from shim.confirm import (
    CONTINUATION_PREFIX,
    Link,
    Writer,
    debug,
    wire_text,
)
from shim.elicit import Elicited
from shim.holding import Holding, Schedule
from shim.jsonrpc import JsonId
from shim.leases import Leases
from shim.listing import (
    CONFIRM_TOOL,
    CONFIRM_TOOL_DEF,
    response_id,
    rewrite_tools_list,
)
from shim.paused import paused_text
from shim.replay import Replay
from shim.target_answers import TargetAnswers

__all__ = [
    "CONFIRM_TOOL",
    "CONFIRM_TOOL_DEF",
    "CONTINUATION_PREFIX",
    "Firewall",
    "Link",
    "Writer",
    "paused_text",
    "response_id",
    "rewrite_tools_list",
]

log = logging.getLogger("mcp-action-firewall")


class Firewall(CallJudging, TargetAnswers):
    """The shim's message handling for one agent, one target and one daemon session."""

    def __init__(
        self,
        to_client: Writer,
        to_target: Writer,
        link: Link,
        *,
        hold: float = 0.0,
        schedule: Schedule | None = None,
        leases: Leases | None = None,
    ) -> None:
        self._client = to_client
        self._target = to_target if leases is None else leases  # it writes to to_target, in order
        self._link = link
        self._leases = leases
        if hasattr(link, "on_late"):
            link.on_late = self.on_late_reply
        if hasattr(link, "on_push"):
            link.on_push = self.on_push
        self._hold_seconds = hold if schedule is not None else 0.0
        self._schedule = schedule
        self._holding: dict[str, Holding] = {}  # paused calls held open, by action id
        self._held_ids: dict[JsonId, str] = {}  # their request ids -> action id
        self._inflight: dict[JsonId, str] = {}  # forwarded requests awaiting the target's answer
        self._list_first_page: dict[JsonId, bool] = {}  # tools/list requests in flight
        self._replays: dict[JsonId, Replay] = {}  # approved calls in flight, by the shim's own id
        self._replay_ids: dict[JsonId, JsonId] = {}  # the agent's confirm id -> the shim's id
        self._judging: dict[JsonId, bool] = {}  # calls and confirms awaiting the daemon -> cancelled?
        self._paused: dict[JsonId, str] = {}  # answered as paused -> action id
        self._continuations: dict[str, tuple[str, bytes, Any]] = {}  # token -> action, params, state
        self._held_states: dict[str, Any] = {}  # action waiting for a new approval -> server state
        self._client_info: tuple[str, str, str] | None = None
        self._init_pinning()
        self._client_elicits = False  # the legacy client declared form elicitation in initialize
        self._asks: dict[str, str] = {}  # the shim's dialog requests to the client -> action id
        self._elicited: dict[str, Elicited] = {}  # 2026-07-28 dialogs awaiting the retry, by token
        self.target_alive = True
        #: tools/list pages and approved calls sent so far (see Streaming.may_end_stream).
        self.whole_answers_asked = 0

    def on_push(self, message: p.Message) -> None:
        """What the daemon sends unasked: leases, pins that changed, or an approval made in a
        console (see Confirmations.on_push)."""
        if self._leases is not None and self._leases.on_push(message):
            return
        if not self._pins_message(message):
            super().on_push(message)

    def judging(self) -> bool:
        """Whether a call or a confirm still waits for the daemon's verdict."""
        return bool(self._judging)

    def end_of_input(self) -> None:
        """The agent's chunk is handled: send the leased calls' audit records, then the calls."""
        if self._leases is not None:
            self._leases.flush()

    def _request(self, make: Any, callback: Any) -> None:
        self._link.request(make, callback)

    def _notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        """Tell the daemon something; a message that cannot be sent is logged, never raised."""
        try:
            self._link.notify(message, sticky=sticky)
        except Exception as exc:
            log.warning("could not tell firewalld %s: %r", p.tag_of(message), exc)

    # -- agent -> target ---------------------------------------------------------------------

    def on_client_line(self, line: bytes) -> None:
        """Handle one line from the agent."""
        if not line.strip():
            return
        try:
            self._client_line(line)
        except Exception as exc:  # the loop must outlive any message
            log.error("internal error on a message from the agent: %r", exc, exc_info=debug())
            kind, msg_id = rpc.salvage(line)
            if kind == "request":
                self._client.write_line(rpc.error_line(msg_id, rpc.INTERNAL_ERROR, "Internal error"))

    def _client_line(self, line: bytes) -> None:
        try:
            msg = rpc.check_message(rpc.loads_strict(line))
        except rpc.Rejected as exc:
            self._refuse(exc, line)
            return
        method = msg.get("method")
        if method is None:  # the agent's answer to a server->agent request (or to the shim's dialog)
            if not self._on_client_answer(msg):
                self._target.write_line(rpc.unsplittable(line))
            return
        msg_id: JsonId | None = msg.get("id")
        if msg_id is not None and self._busy(msg_id):
            text = f"Invalid Request: id {msg_id!r} is already used by a request in flight; nothing was sent"
            self._refuse(rpc.Rejected(rpc.INVALID_REQUEST, text, msg_id), line)
            return
        params: dict[str, Any] = msg.get("params") or {}
        if method == "initialize":
            self._note_initialize(params)
        self._note_client(method, params)
        if method == "tools/call":
            if msg_id is None:
                log.warning("dropped a tools/call notification: a call without an id is never run")
            else:
                self._on_tools_call(msg_id, params, msg.get("params"))
            return
        if rpc.looks_like_tools_call(method):
            self._refuse(
                rpc.Rejected(rpc.INVALID_REQUEST, f"Invalid Request: method {method!r}", msg_id), line
            )
            return
        if msg_id is None:
            if method == "notifications/cancelled" and self._swallow_cancel(params):
                return
        else:
            alive = self.target_alive
            if alive:
                self._inflight[msg_id] = method
                if method == "tools/list":
                    self._list_first_page[msg_id] = params.get("cursor") is None
                    self.whole_answers_asked += 1
            if not alive:
                self._answer_gone(msg_id)
                return
        if not self._target.write_line(rpc.unsplittable(line)) and msg_id is not None:
            self._answer_gone(msg_id)

    def _busy(self, msg_id: JsonId) -> bool:
        """Whether a request with this id is still waiting for its answer (a second request under
        it would make its answer ambiguous). An id answered as paused is free again."""
        if (
            msg_id in self._inflight
            or msg_id in self._judging
            or msg_id in self._replay_ids
            or msg_id in self._held_ids
            or msg_id in self._pages_waiting
        ):
            return True
        self._paused.pop(msg_id, None)  # a cancel of this id now means the new request
        return False

    def on_client_overlong(self, head: bytes, size: int) -> None:
        """A line from the agent over the size limit was dropped; ``head`` is its beginning.

        A request among such lines is answered (the agent must not wait for ever); an answer to the
        server's request is reported to the server.
        """
        try:
            kind, msg_id = rpc.salvage(head)
            message = f"Invalid Request: a message of {size} bytes or more is over the firewall's limit"
            exc = rpc.Rejected(rpc.INVALID_REQUEST, message)
            if kind == "request":
                exc.msg_id = msg_id
            elif kind == "response":
                exc.answer_id = msg_id
            self._refuse(exc, head)
        except Exception as exc:  # the reader must outlive any message
            log.error("internal error on an over-long message from the agent: %r", exc, exc_info=debug())

    def _refuse(self, exc: rpc.Rejected, line: bytes) -> None:
        log.warning("refused a message from the agent (%s): %r", exc.message, line[:120])
        if exc.msg_id is not None:
            self._client.write_line(rpc.error_line(exc.msg_id, exc.code, exc.message))
        elif exc.batch_ids:
            self._client.write_line(rpc.batch_error_line(exc.batch_ids, exc.code, exc.message))
        elif exc.anonymous:
            self._client.write_line(rpc.error_line(None, exc.code, exc.message))
        if exc.answer_id is not None:  # the server asked something; tell it the answer was refused
            text = f"The client's answer was refused by the MCP Action Firewall: {exc.message}"
            self._target.write_line(rpc.error_line(exc.answer_id, rpc.INTERNAL_ERROR, text))

    def _note_client(self, method: str, params: dict[str, Any]) -> None:
        """Tell the daemon who the agent is, from ``initialize`` or a stateless request's ``_meta``."""
        if self._client_info is not None and method != "initialize":
            return
        info: Any = params.get("clientInfo")
        version: Any = params.get("protocolVersion")
        meta = params.get("_meta")
        if info is None and isinstance(meta, dict):
            for key, value in meta.items():
                if key.endswith("clientInfo"):
                    info = value
                elif key.endswith("protocolVersion"):
                    version = value
        if not isinstance(info, dict):
            return
        found = (
            wire_text(info.get("name", "")),
            wire_text(info.get("version", "")),
            wire_text(version or ""),
        )
        if found != self._client_info:
            self._client_info = found
            self._notify(p.ClientInfo(*found), sticky="client_info")

    def _swallow_cancel(self, params: dict[str, Any]) -> bool:
        """Only a request the target is working on may be cancelled there.

        A cancel for a call being judged stops it from running; one for a paused call withdraws
        its pending action; one for anything the target never saw (or already answered) is not
        forwarded at all.
        """
        req: JsonId = params.get("requestId")  # type: ignore[assignment]
        if not rpc.valid_id(req):
            return False
        if req in self._judging:
            self._judging[req] = True
            return True
        if req in self._held_ids:  # a held call: stop holding, and withdraw its action
            self._drop_hold(self._held_ids[req])
            return True
        wire_id = self._replay_ids.get(req)
        if wire_id is not None:  # the approved call it started runs under the shim's own id
            replay = self._forget_replay(wire_id)
            if replay is not None:
                self._record(replay.action_id, "unknown", "the agent cancelled it while it ran")
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {**params, "requestId": wire_id},
            }
            self._target.write_line(rpc.dumps_reply(cancel))
            return True
        action_id = self._paused.pop(req, None)
        if action_id is None:
            if self._inflight.pop(req, None) is None:
                log.debug("dropped a cancel for request %r, which the server is not working on", req)
                return True
            self._list_first_page.pop(req, None)
            return False
        self._notify(p.Withdraw(action_id))
        return True
