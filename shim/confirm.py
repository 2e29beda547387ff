"""The ``firewall_confirm`` side of the shim: approved calls, their replays and their continuations.

A paused call is answered at once with :func:`paused_text` (which never holds a code: the daemon
never sends one to a shim). ``firewall_confirm`` sends the agent's code to the daemon; on success
the frozen call is sent to the server under an id that only the shim chooses
(:data:`RUN_ID_PREFIX` and 64 random bits), and the server's answer is mapped back to the
confirm's id. So no request of the agent's can be taken for the approved call, nor its answer
for the approved call's answer (the agent cannot send the id, it never sees it).

What became of each approved call goes to the daemon as a reliable record (kept until the daemon
acknowledges it, sent again after a reconnect): ``sent``, then ``ran`` (or ``unknown`` if no
answer will come); ``not_run`` if it was never sent (the agent cancelled, or the approval came
after the shim had stopped waiting), which makes the daemon put the action back to wait for
approval, so the agent's "it did not run" stays true.

If the server answers the replay ``input_required`` (2026-07-28), the server's ``requestState`` is
swapped for a continuation token the shim remembers. The agent's retry (the same confirm, with a
new id) brings the token back. A retry that only returns the token continues the approval. A
retry that adds ``inputResponses`` adds something the human has not seen: the daemon judges it
as the approved call plus one argument ``inputResponses``, and it runs only as the policy says
(``approve``: a new action, shown in the console with those input responses, and a new code).
Whatever else the retry carries is not sent. Tokens are random, single use, and live in this
process only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.holding import PROGRESS_EVERY, Holding, Schedule, _progress_token
from shim.jsonrpc import JsonId
from shim.listing import CONFIRM_TOOL
from shim.replay import _TRANSPORT, Replay, replay_params, transport_meta

log = logging.getLogger("mcp-action-firewall")

#: The prefix of the ``requestState`` the shim hands out for an approved call's next round.
CONTINUATION_PREFIX = "mcp-action-firewall/continue/"
#: The prefix of the ids under which approved calls go to the server.
RUN_ID_PREFIX = "mcp-action-firewall/run/"
#: Bound on the continuations remembered (oldest forgotten first).
_MAX_CONTINUATIONS = 256


class Writer(Protocol):
    """Where lines go: the relay's output streams in production, a list in tests."""

    def write_line(self, line: bytes) -> bool: ...


class Link(Protocol):
    """The daemon connection: :class:`shim.daemon_link.DaemonLink` in production."""

    def request(self, make: Any, callback: Any) -> None: ...

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None: ...

    def notify_reliable(self, key: str, message: p.Outcome) -> None: ...


class Confirmations:
    """The confirm half of :class:`shim.firewall.Firewall`, which provides the state and methods below."""

    _client: Writer
    _target: Writer
    _link: Link
    target_alive: bool
    whole_answers_asked: int
    _inflight: dict[JsonId, str]
    _judging: dict[JsonId, bool]
    _replays: dict[JsonId, Replay]
    _replay_ids: dict[JsonId, JsonId]
    _continuations: dict[str, tuple[str, bytes, Any]]
    #: Server state of a continuation that waits for a new approval, by its new action id.
    _held_states: dict[str, Any]
    _hold_seconds: float
    _schedule: Schedule | None
    _holding: dict[str, Holding]
    _held_ids: dict[JsonId, str]

    def _answer_paused(
        self, msg_id: JsonId, name: str, params_json: bytes, stateless: bool, reply: p.Verdict
    ) -> None:
        raise NotImplementedError

    def _notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        raise NotImplementedError

    def _request(self, make: Any, callback: Any) -> None:
        raise NotImplementedError

    def _end_ask(self, ask_id: str) -> None:
        raise NotImplementedError

    def _internal_error(self, msg_id: JsonId, name: str, stateless: bool, exc: Exception) -> None:
        raise NotImplementedError

    def _on_verdict(
        self,
        msg_id: JsonId,
        name: str,
        params_json: bytes,
        stateless: bool,
        reply: p.Message | None,
        why: str,
        *,
        run: Callable[[], None] | None = None,
    ) -> None:
        raise NotImplementedError

    # -- holding a paused call open ---------------------------------------------------------

    def _start_hold(
        self,
        msg_id: JsonId,
        name: str,
        params_json: bytes,
        stateless: bool,
        verdict: p.Verdict,
        *,
        always: bool = False,
    ) -> bool:
        """Hold a paused call open (True), so that a console approval answers it with the real
        result; False when holding is off. ``always``: even with no console open (the client's
        own dialog is asked, see :mod:`shim.elicit`)."""
        if self._hold_seconds <= 0 or self._schedule is None or not verdict.action_id:
            return False
        if not (verdict.watched or always):
            return False  # no console is open that could approve it: say "paused" at once
        action_id = verdict.action_id
        held = Holding(msg_id, name, params_json, stateless, verdict)
        self._holding[action_id] = held
        self._held_ids[msg_id] = action_id
        self._notify(p.Held(action_id, self._hold_seconds))
        held.timer = self._schedule(self._hold_seconds, lambda: self._hold_over(action_id))
        token = _progress_token(params_json)
        if token is not None:

            def tick() -> None:
                if self._holding.get(action_id) is not held or self._schedule is None:
                    return
                held.ticks += 1
                progress = {
                    "progressToken": token,
                    "progress": held.ticks,
                    "message": f"Waiting for approval in the firewall console (action {action_id})",
                }
                self._client.write_line(
                    rpc.dumps_reply(
                        {"jsonrpc": "2.0", "method": "notifications/progress", "params": progress}
                    )
                )
                held.ticker = self._schedule(PROGRESS_EVERY, tick)

            held.ticker = self._schedule(PROGRESS_EVERY, tick)
        return True

    def _take_hold(self, action_id: str) -> Holding | None:
        held = self._holding.pop(action_id, None)
        if held is not None:
            held.stop()
            self._held_ids.pop(held.msg_id, None)
            if held.ask is not None:  # the client's dialog about it is still open: close it
                self._end_ask(held.ask)
        return held

    def _hold_over(self, action_id: str) -> None:
        """The hold ran out: the agent is told the call is paused (the code path)."""
        held = self._take_hold(action_id)
        if held is None:
            return
        self._notify(p.Held(action_id, 0.0))
        self._answer_paused(held.msg_id, held.name, held.params_json, held.stateless, held.verdict)

    def _drop_hold(self, action_id: str) -> None:
        """The agent cancelled a held call: nothing is answered (a cancelled request gets none),
        and its action is withdrawn."""
        if self._take_hold(action_id) is not None:
            self._notify(p.Withdraw(action_id))

    def on_push(self, message: p.Message) -> None:
        """What the daemon sends unasked: an approval made in a console runs the held call now and
        answers the agent's original request with the real result."""
        if not isinstance(message, p.Approved):
            return
        held = self._take_hold(message.action_id)
        if held is None:  # no longer held (answered as paused, cancelled, or the shim restarted)
            self._record(message.action_id, "not_run", "the approval came after the call stopped being held")
            return
        frozen = json.loads(held.params_json)
        self._run_approved(
            held.msg_id, replay_params(frozen, frozen.get("_meta"), None), message.action_id, held.stateless
        )

    # -- the code --------------------------------------------------------------------------

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
                self._record(
                    reply.action_id, "not_run", "the agent cancelled its confirm before the call was sent"
                )
                return
            frozen = json.loads(reply.params)
            if not isinstance(frozen, dict):
                raise TypeError("the daemon's frozen params are not an object")
            params = replay_params(frozen, meta, task)
            held = self._held_states.pop(reply.action_id, None)
            if held is not None:
                params["requestState"] = held
            self._run_approved(msg_id, params, reply.action_id, stateless)
            return
        if cancelled:
            return
        if isinstance(reply, p.Confirmed | p.Error):
            text = reply.message
        else:
            text = (
                f"The firewall could not check the code: {why}. Nothing was run. Ask the user for the "
                "code shown in the firewall console now (codes change if the firewall daemon restarts), "
                "then confirm again."
            )
        self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

    def on_late_reply(self, reply: p.Message) -> None:
        """An answer from the daemon after its request gave up: an approval that came too late
        did not run, and the daemon must know (it puts the action back to wait)."""
        if isinstance(reply, p.Confirmed) and reply.ok and reply.action_id:
            self._record(reply.action_id, "not_run", "the approval came after the shim had stopped waiting")

    # -- running an approved call ----------------------------------------------------------

    def _run_approved(
        self, agent_id: JsonId, params: dict[str, Any], action_id: str, stateless: bool
    ) -> None:
        """Send an approved call to the server under an id of the shim's own."""
        params_json = rpc.dumps(params)
        if not self.target_alive:
            self._record(action_id, "not_run", "the server had exited")
            self._client.write_line(
                rpc.error_line(agent_id, rpc.TARGET_GONE, "The MCP server behind the firewall has exited.")
            )
            return
        wire_id = RUN_ID_PREFIX + os.urandom(8).hex()
        line = b'{"jsonrpc":"2.0","id":"%b","method":"tools/call","params":%b}' % (
            wire_id.encode(),
            params_json,
        )
        self._inflight[wire_id] = "tools/call"
        self._replays[wire_id] = Replay(agent_id, action_id, params_json)
        self._replay_ids[agent_id] = wire_id
        self.whole_answers_asked += 1
        if not self._target.write_line(line):
            self._forget_replay(wire_id)
            self._record(action_id, "not_run", "the server's input was closed")
            self._client.write_line(
                rpc.error_line(agent_id, rpc.TARGET_GONE, "The MCP server behind the firewall has exited.")
            )
            return
        self._record(action_id, "sent", "sent to the server")

    def _forget_replay(self, wire_id: JsonId) -> Replay | None:
        """Take an approved call out of the books, if ``wire_id`` is one; returns it."""
        replay = self._replays.pop(wire_id, None)
        if replay is not None:
            self._inflight.pop(wire_id, None)
            self._replay_ids.pop(replay.agent_id, None)
        return replay

    def _replay_lost(self, wire_id: JsonId, why: str) -> None:
        """An approved call in flight will get no answer from the server: tell the agent the truth."""
        replay = self._forget_replay(wire_id)
        if replay is None:
            return
        self._record(replay.action_id, "unknown", why)
        text = (
            f"The approved call was sent to the MCP server, but {why}: it may or may not have run. Check "
            f"the firewall's log (`firewall-console log`, action {replay.action_id}) and the server "
            "before trying again."
        )
        self._client.write_line(rpc.error_line(replay.agent_id, rpc.TARGET_GONE, text))

    def _record(self, action_id: str, state: str, detail: str, ok: bool = False) -> None:
        """Tell the daemon what became of an approved call, reliably; never raises."""
        try:
            self._link.notify_reliable(action_id, p.Outcome(action_id, ok, detail, state))
        except Exception as exc:
            log.warning("could not record the outcome of %s: %r", action_id, exc)

    def _finish_replay(self, replay: Replay, line: bytes) -> bytes:
        """The server's answer to an approved call, under the confirm's id; audited, and an
        ``input_required`` one turned into a continuation."""
        msg = json.loads(line)  # response_id() parsed it already: it is JSON
        if not isinstance(msg, dict):
            raise TypeError("not an object")
        msg["id"] = replay.agent_id
        result = msg.get("result")
        if isinstance(result, dict) and result.get("resultType") == "input_required":
            token = CONTINUATION_PREFIX + os.urandom(16).hex()
            self._continuations[token] = (replay.action_id, replay.params, result.get("requestState"))
            if len(self._continuations) > _MAX_CONTINUATIONS:
                del self._continuations[next(iter(self._continuations))]
            result["requestState"] = token
            detail = "input_required: the server asked for more input"
            self._record(replay.action_id, "input_required", detail, ok=True)
            return rpc.dumps_reply(msg)
        ok = isinstance(result, dict) and not result.get("isError", False)
        error = msg.get("error")
        self._record(replay.action_id, "ran", "ok" if ok else json.dumps(error or "isError")[:500], ok=ok)
        return rpc.dumps_reply(msg)

    # -- the next round of an input_required answer ----------------------------------------

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
        retry = {k: v for k, v in json.loads(sent).items() if rpc.fold_key(k) not in _TRANSPORT}
        responses = params.get("inputResponses")
        meta = transport_meta(params.get("_meta"))

        def run(run_action: str = action_id) -> None:
            sent_params = dict(retry)
            if meta is not None:
                sent_params["_meta"] = meta
            if server_state is not None:
                sent_params["requestState"] = server_state
            self._run_approved(msg_id, sent_params, run_action, stateless)

        if not responses:  # nothing the human has not seen: this round continues the approval
            run()
            return
        retry["inputResponses"] = responses
        retry_json = rpc.dumps(retry)
        name = str(retry.get("name", ""))

        def judged(reply: p.Message | None, why: str) -> None:
            if isinstance(reply, p.Verdict) and reply.action == p.APPROVE and reply.action_id:
                self._held_states[reply.action_id] = server_state  # for when it is approved
                if len(self._held_states) > _MAX_CONTINUATIONS:
                    del self._held_states[next(iter(self._held_states))]
            self._on_verdict(msg_id, name, retry_json, stateless, reply, why, run=run)

        self._ask(msg_id, name, stateless, lambda rid: p.ContinueCall(rid, action_id, retry_json), judged)


def wire_text(value: object) -> str:
    """``value`` as text that can go on the wire (a lone surrogate becomes ``?``)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def debug() -> bool:
    """Whether tracebacks belong in the log (only at -vv: never a traceback to a user otherwise)."""
    return log.isEnabledFor(logging.DEBUG)
