"""The in-memory fuzz harness: the real ``Firewall`` with a fake daemon, a fake target, and the invariants.

A ``Session`` wires a :class:`shim.firewall.Firewall` to list-backed pipes and a ``FakeDaemon`` that
decides by the tool's name (``delete``/``pay`` need approval, ``deny`` is denied, ``slow`` answers late
or never) and remembers every params blob it allowed and every frozen call it approved. After every
step, ``check_target_lines`` holds the core invariant against every line that reached the target:

- it is a line the shim's own strict parser accepts (the shim never forwards what it would refuse);
- if any reader's view of it (or of any piece a line-splitting reader would cut it into) is a
  ``tools/call``, the line is whole, is exactly ``{"jsonrpc","id","method","params"}`` with params
  byte-identical to a blob the daemon allowed, or is a replay of a call the daemon approved with
  the frozen name and arguments; and every view agrees with the strict one.

``finish`` then checks that no request was left without an answer.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.firewall import CONTINUATION_PREFIX, Firewall

Callback = Callable[[p.Message | None, str], None]
TRANSPORT_KEYS = {"_meta", "task", "inputresponses", "requeststate"}


class Pipe:
    """A pipe end that keeps every line written to it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write_line(self, line: bytes) -> bool:
        self.lines.append(line)
        return True


@dataclass
class FakeDaemon:
    """Answers the shim's requests when told to; records what it allowed and approved."""

    pending: list[tuple[p.Message, Callback]] = field(default_factory=list)
    notes: list[p.Message] = field(default_factory=list)
    allowed: set[bytes] = field(default_factory=set)
    paused: dict[str, bytes] = field(default_factory=dict)  # code -> frozen params
    approved: list[dict[str, Any]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    _next_rid: int = 1

    def request(self, make: Callable[[int], p.Message], callback: Callback) -> None:
        self.pending.append((make(self._next_rid), callback))
        self._next_rid += 1

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        p.encode(message)  # what the real link would do first: a note that cannot be encoded raises
        self.notes.append(message)

    def notify_reliable(self, key: str, message: p.Outcome) -> None:
        p.encode(message)
        self.notes.append(message)

    def answer(self, index: int, mode: str = "policy") -> None:
        """Answer one pending request: by policy, or fail it (``none``), or with a daemon error."""
        message, callback = self.pending.pop(index)
        if mode == "none":
            callback(None, "the firewall daemon did not answer in time")
        elif mode == "error":
            callback(p.Error(getattr(message, "rid", 0), p.E_INTERNAL, "boom"), "")
        elif isinstance(message, p.Decide | p.ContinueCall):
            callback(self._decide(message), "")
        elif isinstance(message, p.Confirm):
            callback(self._confirm(message), "")
        elif isinstance(message, p.ToolDefinitions):  # hides the tools whose name says so
            names = [json.loads(d).get("name") for d in message.tools]
            callback(p.ToolsHidden(message.rid, [n for n in names if isinstance(n, str) and "hide" in n]), "")
        else:  # like the real link: every request ends in exactly one callback
            callback(None, "the firewall daemon did not answer in time")

    def answer_all(self) -> None:
        while self.pending:
            self.answer(0)

    def _decide(self, msg: p.Decide | p.ContinueCall) -> p.Verdict:
        name = str(json.loads(msg.params)["name"]).casefold()
        if "deny" in name:
            return p.Verdict(msg.rid, p.DENY, "denied", "r")
        if "delete" in name or "pay" in name:
            code = f"{len(self.codes) + 100000}"
            self.codes.append(code)
            self.paused[code] = msg.params
            return p.Verdict(msg.rid, p.APPROVE, "needs approval", "kw", f"A-{code}", 0.0, 3)
        self.allowed.add(msg.params)
        return p.Verdict(msg.rid, p.ALLOW, "ok", "r")

    def _confirm(self, msg: p.Confirm) -> p.Confirmed:
        frozen = self.paused.pop(msg.otp, None)
        if frozen is None:
            return p.Confirmed(msg.rid, False, "The code does not match.")
        self.approved.append(json.loads(frozen))
        return p.Confirmed(msg.rid, True, "approved", f"A-{msg.otp}", frozen)


def go_fold(key: str) -> str:
    """How Go's encoding/json (and other lenient decoders) match a key to a field."""
    return unicodedata.normalize("NFKC", key.casefold()).casefold().split("\0")[0]


def _last_wins_folded(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {go_fold(k): v for k, v in pairs}


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


VIEWS: dict[str, Callable[[str], Any]] = {
    "python": json.loads,  # last duplicate wins
    "first-wins": lambda text: json.loads(text, object_pairs_hook=_first_wins),
    "go-fold": lambda text: json.loads(text, object_pairs_hook=_last_wins_folded),
}


def pieces(line: bytes) -> list[str]:
    """The line, and the pieces line-splitting readers would cut it into (universal newlines, splitlines)."""
    text = line.decode("utf-8", "replace")
    out = [text, *text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), *text.splitlines()]
    return list(dict.fromkeys(out))


def _is_call(method: object) -> bool:
    return isinstance(method, str) and rpc.looks_like_tools_call(method) or method == "tools/call"


def _fold_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {go_fold(k): _fold_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fold_tree(v) for v in value]
    return value


class InvariantBroken(AssertionError):
    """The shim forwarded something it must not have."""


@dataclass
class Session:
    """One Firewall with fake pipes and a fake daemon, and the bookkeeping the invariants need."""

    daemon: FakeDaemon = field(default_factory=FakeDaemon)
    client: Pipe = field(default_factory=Pipe)
    target: Pipe = field(default_factory=Pipe)
    checked: int = 0  # target lines checked so far
    requests: dict[Any, int] = field(default_factory=dict)  # accepted request id -> count
    cancelled: set[Any] = field(default_factory=set)
    lines_fed: int = 0

    def __post_init__(self) -> None:
        self.firewall = Firewall(self.client, self.target, self.daemon)

    def agent(self, line: bytes) -> None:
        """Feed one agent line, remembering the requests the strict parser accepts."""
        self.lines_fed += 1
        try:
            msg = rpc.check_message(rpc.loads_strict(line))
        except rpc.Rejected as exc:
            msg = None
            if exc.msg_id is not None:
                self.requests[exc.msg_id] = self.requests.get(exc.msg_id, 0) + 1
        if msg is not None and "method" in msg:
            if "id" in msg:
                self.requests[msg["id"]] = self.requests.get(msg["id"], 0) + 1
            elif msg["method"] == "notifications/cancelled" and isinstance(msg.get("params"), dict):
                self.cancelled.add(msg["params"].get("requestId"))
        self.firewall.on_client_line(line)
        self.check_target_lines()

    def server(self, line: bytes) -> None:
        """Feed one target line."""
        self.firewall.on_target_line(line)
        self.check_target_lines()

    def check_target_lines(self) -> None:
        """The core invariant, for every line that reached the target since the last check."""
        for line in self.target.lines[self.checked :]:
            self._check(line)
        self.checked = len(self.target.lines)

    def _check(self, line: bytes) -> None:
        try:
            strict = rpc.check_message(rpc.loads_strict(line))
        except rpc.Rejected as exc:
            raise InvariantBroken(
                f"forwarded a line the strict parser refuses ({exc.message}): {line[:200]!r}"
            ) from None
        views: list[tuple[str, Any]] = []
        for piece in pieces(line):
            for view, parse in VIEWS.items():
                try:
                    views.append((view, parse(piece)))
                except (ValueError, RecursionError):
                    continue
        calls = [(v, m) for v, m in views if isinstance(m, dict) and _is_call(m.get("method"))]
        if not calls and not _is_call(strict.get("method")):
            return
        if strict.get("method") != "tools/call":
            raise InvariantBroken(f"a reader sees a tools/call in a line that is not one: {line[:200]!r}")
        params = strict["params"]
        self._check_judged(line, strict, params)
        for view, msg in calls:
            if _fold_tree(msg.get("params")) != _fold_tree(params) or msg.get("id") != strict.get("id"):
                raise InvariantBroken(f"the {view} reader sees another call than was judged: {line[:200]!r}")

    def _check_judged(self, line: bytes, strict: dict[str, Any], params: dict[str, Any]) -> None:
        if set(strict) != {"jsonrpc", "id", "method", "params"}:
            raise InvariantBroken(f"judged call with extra members: {line[:200]!r}")
        prefix = b'{"jsonrpc":"2.0","id":%b,"method":"tools/call","params":' % rpc.dumps(strict["id"])
        if not line.startswith(prefix) or not line.endswith(b"}"):
            raise InvariantBroken(f"a tools/call not built by the shim: {line[:200]!r}")
        blob = line[len(prefix) : -1]
        if blob in self.daemon.allowed:
            return
        core = {k: v for k, v in params.items() if go_fold(k) not in TRANSPORT_KEYS}
        for frozen in self.daemon.approved:
            if core == {k: v for k, v in frozen.items() if go_fold(k) not in TRANSPORT_KEYS}:
                return
        raise InvariantBroken(f"a tools/call that was neither allowed nor approved: {line[:200]!r}")

    def finish(self) -> None:
        """Answer everything, let the target exit; then no accepted request may be left unanswered."""
        self.daemon.answer_all()
        self.firewall.on_target_exit()
        self.check_target_lines()
        answered: set[Any] = set()
        for line in self.client.lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # the target's garbage, relayed as it came
            for item in msg if isinstance(msg, list) else [msg]:
                if isinstance(item, dict) and "method" not in item:
                    answered.add(_hashable(item.get("id")))
        for msg_id, count in self.requests.items():
            if count == 1 and msg_id not in self.cancelled and _hashable(msg_id) not in answered:
                raise InvariantBroken(f"request {msg_id!r} was left without an answer")


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def continuation_tokens(session: Session) -> list[str]:
    """The continuation tokens the shim has handed the agent so far."""
    found: list[str] = []
    for line in session.client.lines:
        start = line.find(CONTINUATION_PREFIX.encode())
        if start >= 0:
            end = line.find(b'"', start)
            found.append(line[start:end].decode())
    return found
