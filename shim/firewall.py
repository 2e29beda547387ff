"""What the shim does with each message: judge, pause, confirm, relay.

No I/O of its own: it is handed two line writers (to the agent and to the target) and a link to
the daemon, so tests can drive it in memory. Every method may be called from any thread.

Agent to target, each line is parsed strictly (see :mod:`shim.jsonrpc`); what cannot be judged is
never forwarded. ``tools/call`` goes to the daemon and only the re-serialised, judged message is
forwarded; everything else is forwarded byte for byte. Target to agent, lines pass untouched
except ``tools/list`` results, which gain ``firewall_confirm`` on their first page.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Protocol

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.jsonrpc import JsonId

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

#: Past this size a paused call's arguments are shown to the agent as a preview only.
_PREVIEW = 4096
#: Responses over this size are not parsed just to learn their id (see :func:`response_id`).
_PARSE_LIMIT = 256 * 1024
_SCALAR_ID = rb'(-?\d{1,30}|"(?:[^"\\\r\n]|\\.){0,200}")'
_HEAD_ID = re.compile(rb'\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*' + _SCALAR_ID + rb"\s*,")
_TAIL_ID = re.compile(rb',\s*"id"\s*:\s*' + _SCALAR_ID + rb'\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$')
_NOT_A_RESPONSE = object()


class Writer(Protocol):
    """Where lines go: :class:`shim.lines.LineWriter` in production, a list in tests."""

    def write_line(self, line: bytes) -> bool: ...


class Link(Protocol):
    """The daemon connection: :class:`shim.daemon_link.DaemonLink` in production."""

    def request(self, make: Any, callback: Any) -> None: ...

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None: ...


class Firewall:
    """The shim's message handling for one agent, one target and one daemon session."""

    def __init__(self, to_client: Writer, to_target: Writer, link: Link) -> None:
        self._client = to_client
        self._target = to_target
        self._link = link
        self._lock = threading.Lock()
        self._inflight: dict[JsonId, str] = {}  # forwarded requests awaiting the target's answer
        self._list_first_page: dict[JsonId, bool] = {}  # tools/list requests in flight
        self._replays: dict[JsonId, str] = {}  # confirmed calls in flight -> action id
        self._judging: dict[JsonId, bool] = {}  # calls awaiting a verdict -> cancelled?
        self._paused: dict[JsonId, str] = {}  # answered as paused -> action id
        self._client_info: tuple[str, str, str] | None = None
        self.target_alive = True

    # -- agent -> target ---------------------------------------------------------------------

    def on_client_line(self, line: bytes) -> None:
        """Handle one line from the agent."""
        if not line.strip():
            return
        try:
            msg = rpc.check_message(rpc.loads_strict(line))
        except rpc.Rejected as exc:
            self._refuse(exc, line)
            return
        method = msg.get("method")
        if method is None:  # the agent's answer to a server->agent request
            self._target.write_line(line)
            return
        msg_id: JsonId | None = msg.get("id")
        params: dict[str, Any] = msg.get("params") or {}
        self._note_client(method, params)
        if method == "tools/call":
            if msg_id is None:
                log.warning("dropped a tools/call notification: a call without an id is never run")
            else:
                self._on_tools_call(msg_id, msg)
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
            with self._lock:
                self._inflight[msg_id] = method
                if method == "tools/list":
                    self._list_first_page[msg_id] = params.get("cursor") is None
        if not self._target.write_line(line) and msg_id is not None:
            self._answer_gone(msg_id)

    def _refuse(self, exc: rpc.Rejected, line: bytes) -> None:
        log.warning("refused a message from the agent (%s): %.120r", exc.message, line)
        if exc.msg_id is not None:
            self._client.write_line(rpc.error_line(exc.msg_id, exc.code, exc.message))

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
        found = (str(info.get("name", "")), str(info.get("version", "")), str(version or ""))
        if found != self._client_info:
            self._client_info = found
            self._link.notify(p.ClientInfo(*found), sticky="client_info")

    def _swallow_cancel(self, params: dict[str, Any]) -> bool:
        """A cancel for a call the target never saw must not reach it; the pause is withdrawn."""
        req: JsonId = params.get("requestId")  # type: ignore[assignment]
        if not rpc.valid_id(req):
            return False
        with self._lock:
            if req in self._judging:
                self._judging[req] = True
                return True
            action_id = self._paused.pop(req, None)
        if action_id is None:
            return False
        self._link.notify(p.Withdraw(action_id))
        return True

    def _on_tools_call(self, msg_id: JsonId, msg: dict[str, Any]) -> None:
        params = msg.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
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
        name: str = params["name"]
        stateless = rpc.is_stateless(params)
        if name == CONFIRM_TOOL:
            self._on_confirm(msg_id, params, stateless)
            return
        try:
            params_json = rpc.dumps(params)
        except UnicodeEncodeError:
            self._client.write_line(
                rpc.error_line(msg_id, rpc.INVALID_PARAMS, "Invalid params: lone surrogate in a string")
            )
            return
        with self._lock:
            self._judging[msg_id] = False

        def on_verdict(reply: p.Message | None, why: str) -> None:
            self._on_verdict(msg_id, name, params_json, stateless, reply, why)

        self._link.request(lambda rid: p.Decide(rid, params_json), on_verdict)

    def _on_verdict(
        self,
        msg_id: JsonId,
        name: str,
        params_json: bytes,
        stateless: bool,
        reply: p.Message | None,
        why: str,
    ) -> None:
        with self._lock:
            cancelled = self._judging.pop(msg_id, False)
        if isinstance(reply, p.Verdict) and reply.action == p.ALLOW:
            if not cancelled:
                self._forward_call(msg_id, params_json)
            return
        if isinstance(reply, p.Verdict) and reply.action == p.APPROVE:
            if cancelled:
                self._link.notify(p.Withdraw(reply.action_id))
                return
            with self._lock:
                self._paused[msg_id] = reply.action_id
            text = paused_text(name, params_json, reply)
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))
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

    def _forward_call(self, msg_id: JsonId, params_json: bytes, action_id: str | None = None) -> None:
        line = b'{"jsonrpc":"2.0","id":%b,"method":"tools/call","params":%b}' % (
            rpc.dumps(msg_id),
            params_json,
        )
        with self._lock:
            alive = self.target_alive
            if alive:
                self._inflight[msg_id] = "tools/call"
                if action_id is not None:
                    self._replays[msg_id] = action_id
        if not alive or not self._target.write_line(line):
            self._answer_gone(msg_id)

    def _on_confirm(self, msg_id: JsonId, params: dict[str, Any], stateless: bool) -> None:
        otp = (params.get("arguments") or {}).get("otp")
        if not isinstance(otp, str | int) or isinstance(otp, bool) or not str(otp).strip():
            text = (
                'firewall_confirm needs the approval code as {"otp": "<code>"}. Ask the user for the '
                "code shown in their firewall console; do not guess it."
            )
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))
            return
        code = "".join(str(otp).split()).replace("-", "")
        meta = params.get("_meta")

        def on_confirmed(reply: p.Message | None, why: str) -> None:
            if isinstance(reply, p.Confirmed) and reply.ok:
                frozen = json.loads(reply.params)
                # Transport metadata (progress token, stateless version) belongs to this request.
                frozen.pop("_meta", None)
                if meta is not None:
                    frozen["_meta"] = meta
                self._forward_call(msg_id, rpc.dumps(frozen), reply.action_id)
                return
            if isinstance(reply, p.Confirmed | p.Error):
                text = reply.message
            else:
                text = f"The firewall could not check the code: {why}. Nothing was run; try again shortly."
            self._client.write_line(rpc.tool_error_line(msg_id, text, stateless))

        self._link.request(lambda rid: p.Confirm(rid, code), on_confirmed)

    # -- target -> agent ---------------------------------------------------------------------

    def on_target_line(self, line: bytes) -> None:
        """Handle one line from the target."""
        if not line.strip():
            return
        if self._inflight:  # unlocked peek: a stale answer only costs one parse
            msg_id = response_id(line)
            if msg_id is not _NOT_A_RESPONSE:
                with self._lock:
                    method = self._inflight.pop(msg_id, None)
                    first_page = self._list_first_page.pop(msg_id, None)
                    action_id = self._replays.pop(msg_id, None)
                if method == "tools/list" and first_page is not None:
                    line, listed = rewrite_tools_list(line, first_page)
                    if listed is not None:
                        self._link.notify(p.ToolsListed(listed, first_page))
                if action_id is not None:
                    self._report_outcome(action_id, line)
        if not self._client.write_line(line):
            log.debug("the agent has gone; dropping a line from the target")

    def _report_outcome(self, action_id: str, line: bytes) -> None:
        try:
            msg = json.loads(line)
            result = msg.get("result")
            ok = isinstance(result, dict) and not result.get("isError", False)
            detail = "ok" if ok else json.dumps(msg.get("error") or "isError")[:500]
        except ValueError:
            ok, detail = False, "unparsable answer"
        self._link.notify(p.Outcome(action_id, ok, detail))

    def on_target_exit(self) -> None:
        """The target closed its stdout: every request still in flight gets an error."""
        with self._lock:
            self.target_alive = False
            ids = list(self._inflight)
            self._inflight.clear()
            self._list_first_page.clear()
            self._replays.clear()
        for msg_id in ids:
            self._answer_gone(msg_id)

    def _answer_gone(self, msg_id: JsonId) -> None:
        self._client.write_line(
            rpc.error_line(msg_id, rpc.TARGET_GONE, "The MCP server behind the firewall has exited.")
        )


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


def response_id(line: bytes) -> Any:
    """The id of a response line, or ``_NOT_A_RESPONSE`` (requests and notifications included).

    Small lines are parsed. Big ones (a 10 MB file) would cost more to parse than to relay, so
    their id is read from the ends of the line, where every serialiser puts it; only if it is in
    neither place is the line parsed. This is bookkeeping, not security: a wrong answer here can
    only make the shim miss a tools/list rewrite or an exit error, never forward anything.
    """
    if len(line) > _PARSE_LIMIT:
        for match in (_HEAD_ID.match(line), _TAIL_ID.search(line, len(line) - 512)):
            if match:
                return json.loads(match.group(1))
    try:
        msg = json.loads(line)
    except ValueError:
        return _NOT_A_RESPONSE
    if not isinstance(msg, dict) or "method" in msg or not rpc.valid_id(msg.get("id")):
        return _NOT_A_RESPONSE
    return msg["id"]


def _fold(name: str) -> str:
    if name.isascii():
        return name.lower()
    import unicodedata

    kept = "".join(ch for ch in unicodedata.normalize("NFKC", name) if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", kept.casefold())


def rewrite_tools_list(line: bytes, first_page: bool) -> tuple[bytes, list[dict[str, Any]] | None]:
    """Add ``firewall_confirm`` to the first page of a tools/list result; drop impostors from all pages.

    Also returns each listed tool's name and annotations, which the daemon's policy may use.
    """
    try:
        msg = json.loads(line)
        tools = msg["result"]["tools"]
        if not isinstance(tools, list):
            return line, None
    except (ValueError, KeyError, TypeError):
        return line, None
    kept = [t for t in tools if not (isinstance(t, dict) and _fold(str(t.get("name", ""))) == CONFIRM_TOOL)]
    listed = [
        {"name": t["name"], "annotations": t["annotations"] if isinstance(t.get("annotations"), dict) else {}}
        for t in kept
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]
    if len(kept) != len(tools):
        log.warning("the server lists its own %r tool; it is hidden behind the firewall's", CONFIRM_TOOL)
    if first_page:
        kept.append(CONFIRM_TOOL_DEF)
    msg["result"]["tools"] = kept
    try:
        return rpc.dumps(msg), listed
    except UnicodeEncodeError:
        return line, listed
