"""The wire protocol shared by the shim, the daemon and the console.

Sans-IO: this module only turns messages into bytes and bytes into messages, and says where the
socket lives. It imports the stdlib and msgpack, nothing else, because the shim imports it and
the shim's start-up time is a budget.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack: a map whose ``t``
key names the message type. Every connection opens with :class:`Hello` from the peer and
:class:`Welcome` (or :class:`Error`) from the daemon. Requests carry a ``rid`` chosen by the
peer; the daemon's answer carries the same ``rid``.

Exceptions::

    ProtocolError        a frame or message that breaks the rules (the connection is closed)
    └── FrameTooLarge    a frame announced a size over the limit
"""

from __future__ import annotations

import os
import pwd
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgpack

PROTOCOL_VERSION = 1
#: Largest frame either side accepts. A paused call's frozen arguments travel in one frame, and
#: tools such as ``write_file`` legitimately carry tens of MB, so the cap is generous.
MAX_FRAME = 96 * 1024 * 1024
_HEADER = struct.Struct(">I")

ROLE_SHIM = "shim"
ROLE_CONSOLE = "console"
#: A shim's second connection, for the audit records of leased calls only (see daemon/leases.py).
ROLE_AUDIT = "audit"


class ProtocolError(Exception):
    """Raised when a peer sends a frame or message that breaks the protocol."""


class FrameTooLarge(ProtocolError):
    """Raised when a frame announces a size over :data:`MAX_FRAME`."""


# --------------------------------------------------------------------------------------------
# Messages. Each is a small immutable record (a NamedTuple: typed, frozen, and five times cheaper
# to define than a frozen dataclass, which matters because the shim defines all of them at start)
# with a TAG; `decode` is the only place that turns wire maps back into objects, and it checks
# every field's type.
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Any] = {}
#: Per tag: the message class, and each field's allowed types (exact: what msgpack gives).
_SPECS: dict[str, tuple[Any, dict[str, frozenset[type]]]] = {}
_TYPE_NAMES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "bytes": (bytes,),
    "list": (list, tuple),
    "dict": (dict,),
}


_TAGS: dict[type, str] = {}


def _register(tag: str) -> Any:
    """Class decorator: register a message type under its wire tag."""

    def register(cls: Any) -> Any:
        _record(tag, cls)
        return cls

    return register


def tag_of(message: Message) -> str:
    """The wire tag of a message (``"hello"``, ``"decide"``...)."""
    return _TAGS[type(message)]


def _record(tag: str, cls: Any) -> None:
    specs: dict[str, frozenset[type]] = {}
    for name in cls._fields:
        allowed: list[type] = []
        annotation = cls.__annotations__[name]
        for part in str(getattr(annotation, "__forward_arg__", annotation)).split("|"):
            part = part.strip()
            if part == "None":
                allowed.append(type(None))
            else:
                allowed.extend(_TYPE_NAMES[part.split("[", 1)[0]])
        specs[name] = frozenset(allowed)
    _REGISTRY[tag] = cls
    _SPECS[tag] = (cls, specs)
    _TAGS[cls] = tag


# Handshake ----------------------------------------------------------------------------------


@_register("hello")
class Hello(NamedTuple):
    """First frame from a peer. ``resume`` carries the token of a session to take over again."""

    role: str
    proto: int = PROTOCOL_VERSION
    server_name: str | None = None
    config_path: str | None = None
    target: list[str] | None = None
    cwd: str = ""
    pid: int = 0
    resume: str | None = None
    #: The shim takes leases (see :class:`LeaseGrant`); a peer that does not say so gets none.
    leases: bool = False


@_register("welcome")
class Welcome(NamedTuple):
    """The daemon accepted a :class:`Hello`. ``token`` lets the shim resume the session later."""

    session_id: str
    token: str
    proto: int = PROTOCOL_VERSION
    #: Set when the session's policy could not be loaded; every call is then denied with it.
    policy_error: str | None = None


@_register("client_info")
class ClientInfo(NamedTuple):
    """The shim learnt who the MCP client is (from ``initialize`` or a request's ``_meta``)."""

    name: str
    version: str
    protocol_version: str


# Shim requests -------------------------------------------------------------------------------


@_register("decide")
class Decide(NamedTuple):
    """Judge one ``tools/call``. ``params`` is the call's params, re-serialised canonical JSON."""

    rid: int
    params: bytes


ALLOW = "allow"
APPROVE = "approve"
DENY = "deny"


@_register("verdict")
class Verdict(NamedTuple):
    """The answer to :class:`Decide`. For ``approve`` the action id names the pending action."""

    rid: int
    action: str
    reason: str
    rule: str
    action_id: str = ""
    expires_at: float = 0.0
    attempts: int = 0
    watched: bool = False
    """A console is open that could approve the paused call: the shim may hold it open."""
    elicit: bool = False
    """The policy lets the MCP client's own dialog approve this action (``approve_via_elicitation``
    for this server and client): the shim may ask there, with :class:`ElicitationAnswer`."""


@_register("continue_call")
class ContinueCall(NamedTuple):
    """Judge the retry of approved action ``action_id`` that adds input (2026-07-28's
    ``inputResponses``): ``params`` are the approved call's params with ``inputResponses`` added,
    canonical JSON. Answered with a :class:`Verdict` (``approve`` names a new action)."""

    rid: int
    action_id: str
    params: bytes


@_register("confirm")
class Confirm(NamedTuple):
    """The agent called ``firewall_confirm`` with this code."""

    rid: int
    otp: str


@_register("confirmed")
class Confirmed(NamedTuple):
    """The answer to :class:`Confirm`: the frozen params to run, or why not."""

    rid: int
    ok: bool
    message: str
    action_id: str = ""
    params: bytes = b""


@_register("outcome")
class Outcome(NamedTuple):
    """What became of an approved call, for the audit log (and to reopen one that did not run).

    ``state``: ``sent`` (forwarded to the server), ``ran`` (the server answered; ``ok`` says how),
    ``not_run`` (the shim did not send it: cancelled, or the approval came too late) or
    ``unknown`` (sent, but no answer will come). A shim keeps each record until the daemon
    acknowledges its ``rid`` with :class:`Ack`, and sends it again after a reconnect.
    """

    action_id: str
    ok: bool
    detail: str = ""
    state: str = "ran"
    rid: int = 0


@_register("tools_listed")
class ToolsListed(NamedTuple):
    """A page of the server's tools/list: ``[{"name": str, "annotations": map}]``.

    ``first_page`` starts a new listing (it replaces what the session knew).
    """

    tools: list[dict[str, Any]]
    first_page: bool


@_register("tool_definitions")
class ToolDefinitions(NamedTuple):
    """A page of the server's tools/list, for pinning (see ``daemon/pins.py``): each tool's
    definition as JSON text (name, title, description, inputSchema, outputSchema, annotations).

    ``first_page`` starts a new listing. Answered with :class:`ToolsHidden`; sent with ``rid`` 0
    (no one waits) when the shim re-sends a listing after a reconnect.
    """

    rid: int
    tools: list[bytes]
    first_page: bool
    #: The page has a ``nextCursor``: the listing goes on (a server's first listing is pinned
    #: whole, and ends with its last page).
    more: bool = False


@_register("tools_hidden")
class ToolsHidden(NamedTuple):
    """The answer to :class:`ToolDefinitions`: names the shim drops from the page, because their
    definition is quarantined (changed since it was pinned, new and waiting for review, or rejected)."""

    rid: int
    hidden: list[str]


@_register("pins_changed")
class PinsChanged(NamedTuple):
    """Pushed to a shim: a human reviewed a tool definition of its server (or another chat saw
    one change); the shim tells its agent the tool list changed, so it lists again."""


@_register("resynced")
class Resynced(NamedTuple):
    """Sent by a shim after every (re)connect, once it has re-sent its unacknowledged
    :class:`Outcome` records: an approved action it said nothing of never reached it."""


@_register("approved")
class Approved(NamedTuple):
    """Pushed to a shim: the human approved this held action in the console; run it now."""

    action_id: str


@_register("held")
class Held(NamedTuple):
    """The shim holds the paused call open for ``seconds`` (0: no longer), so a console may
    approve it and the agent gets the real result as the answer to its call."""

    action_id: str
    seconds: float


@_register("elicitation_answer")
class ElicitationAnswer(NamedTuple):
    """The human answered the MCP client's own dialog (``elicitation/create``) about paused action
    ``action_id`` of this shim's session: ``accepted`` approves it, else it is denied.

    The daemon takes it only for a pending action of the sender's own session whose server section
    (and client) has ``approve_via_elicitation``; an accepted one is answered with
    :class:`Confirmed` (the frozen params), anything else with :class:`Ack` or :class:`Error`."""

    rid: int
    action_id: str
    accepted: bool


@_register("withdraw")
class Withdraw(NamedTuple):
    """The agent cancelled a paused call; its pending action is withdrawn."""

    action_id: str


# Leases: a verdict a shim may reuse (see daemon/leases.py and shim/leases.py) --------------------


@_register("lease_grant")
class LeaseGrant(NamedTuple):
    """Pushed to a shim: calls to ``tool`` are allowed under ``rule`` without asking, as long as
    their arguments pass the check named ``check`` (the shim ignores a check it does not know)
    and hold none of ``keys`` (at any depth, compared in lower case; a non-ASCII key is doubtful),
    until a :class:`LeasesRevoked` with a higher epoch, or the connection ends."""

    tool: str
    epoch: int
    rule: str
    check: str
    keys: list[str]


@_register("leases_revoked")
class LeasesRevoked(NamedTuple):
    """Pushed to a shim: every lease of an epoch below ``epoch`` is void. The shim drops them
    before it reads another call, then answers :class:`LeasesRevokedAck`."""

    epoch: int


@_register("leases_revoked_ack")
class LeasesRevokedAck(NamedTuple):
    """A shim has dropped its leases below ``epoch``."""

    epoch: int


@_register("lease_audit")
class LeaseAudit(NamedTuple):
    """Calls a shim forwarded under leases, sent before they were forwarded:
    ``[[seq, tool, rule, params_head], ...]`` (``seq`` counts up in the shim's process,
    ``params_head`` is the first 1,000 bytes of the call's params). The daemon acknowledges
    ``rid`` with :class:`Ack` (cumulatively, a little later); the shim keeps the calls until then
    and sends them again after a reconnect, and the daemon records each ``seq`` once."""

    rid: int
    calls: list[Any]


# Console requests ---------------------------------------------------------------------------


@_register("list_pending")
class ListPending(NamedTuple):
    """Ask for sessions and pending actions (console only)."""

    rid: int


@_register("pending_list")
class PendingList(NamedTuple):
    """Sessions and pending actions. Each entry is a map of plain values (see README)."""

    rid: int
    sessions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    #: Bytes of frozen arguments the daemon holds (``FIREWALLD_MAX_PAUSED_BYTES`` bounds them).
    paused_bytes: int = 0
    #: That bound.
    max_paused_bytes: int = 0


@_register("deny")
class DenyAction(NamedTuple):
    """Deny a pending action (console only)."""

    rid: int
    action_id: str


@_register("approve")
class ApproveAction(NamedTuple):
    """Approve a pending action from the console, while its shim holds the call open (console
    only: a shim that sends it is refused, so nothing the agent writes can approve)."""

    rid: int
    action_id: str


@_register("make_grant")
class MakeGrant(NamedTuple):
    """Approve a paused action with a scope (console only; see :mod:`daemon.grants`).

    ``scope``: ``once`` (this call), ``chat`` (this tool in this chat), ``args`` (this tool with
    ``matches`` for ``minutes``, every chat of its server) or ``always`` (a rule written into the
    policy file, which must still hash to ``base_sha256``, as shown by :class:`PreviewRule`).
    Matches are ``{"key": k, "equals": v}`` or ``{"key": k, "under": "/dir"}``. Answered with
    :class:`Ack` or :class:`Error`.
    """

    rid: int
    action_id: str
    scope: str
    minutes: float = 0.0
    matches: list[dict[str, Any]] | None = None
    base_sha256: str = ""


@_register("preview_rule")
class PreviewRule(NamedTuple):
    """Show the change an ``always`` grant of this action would make to its policy file
    (console only). Answered with :class:`RulePreview`."""

    rid: int
    action_id: str
    matches: list[dict[str, Any]] | None = None


@_register("rule_preview")
class RulePreview(NamedTuple):
    """The policy file an ``always`` grant would change, the unified diff, and the hash of the
    file the diff was made from (to be given back in :class:`MakeGrant`)."""

    rid: int
    path: str
    diff: str
    base_sha256: str


@_register("list_grants")
class ListGrants(NamedTuple):
    """Ask for the live grants (console only). Answered with :class:`GrantList`."""

    rid: int


@_register("grant_list")
class GrantList(NamedTuple):
    """The live grants, newest first, each a map of plain values (see :meth:`daemon.grants.Grant.view`)."""

    rid: int
    grants: list[dict[str, Any]]


@_register("revoke_grant")
class RevokeGrant(NamedTuple):
    """End a grant now (console only)."""

    rid: int
    grant_id: str


@_register("query_log")
class QueryLog(NamedTuple):
    """Ask for the newest audit rows, optionally filtered (console only)."""

    rid: int
    limit: int = 50
    session_id: str | None = None
    server: str | None = None
    tool: str | None = None


@_register("log_rows")
class LogRows(NamedTuple):
    """Audit rows, newest first."""

    rid: int
    rows: list[dict[str, Any]]


@_register("subscribe")
class Subscribe(NamedTuple):
    """Ask the daemon to push an :class:`Event` whenever pending actions or sessions change."""

    rid: int


@_register("event")
class Event(NamedTuple):
    """Something changed (``kind``: pending, session, policy, audit). Re-read with :class:`ListPending`."""

    kind: str
    detail: str = ""


@_register("show_arguments")
class ShowArguments(NamedTuple):
    """Ask for the full arguments of one pending action, from byte ``offset`` (console only).

    A listing cuts big arguments (``arguments_cut``); this fetches them, one bounded
    :class:`ArgumentsPiece` per request, so no answer comes near the frame limit.
    """

    rid: int
    action_id: str
    offset: int = 0


@_register("arguments_piece")
class ArgumentsPiece(NamedTuple):
    """Bytes ``offset`` to ``offset + len(data)`` of an action's arguments (UTF-8 JSON text) of
    ``total`` bytes in all, whose SHA-256 is ``sha256`` (hex): the same text, size and hash as
    the listing's ``arguments_json`` (when not cut), ``arguments_bytes`` and ``arguments_sha256``."""

    rid: int
    action_id: str
    offset: int
    total: int
    sha256: str
    data: bytes


@_register("list_pins")
class ListPins(NamedTuple):
    """Ask for the pinned tool definitions and those waiting for review (console only)."""

    rid: int
    server: str | None = None


@_register("pin_list")
class PinList(NamedTuple):
    """Pins, one map per server and tool (see README, "Tool pinning"): pinned ones without their
    definitions, those under review with both (each cut past a limit, with ``*_cut`` set)."""

    rid: int
    pins: list[dict[str, Any]]


@_register("review_tool")
class ReviewTool(NamedTuple):
    """Accept (re-pin) or reject the definition under review ``review_id`` (console only). A review
    id names one definition: a server that changes it again gets a new id, so what is accepted
    is what the human saw."""

    rid: int
    review_id: str
    accept: bool


@_register("daemon_status_query")
class StatusQuery(NamedTuple):
    """Ask the daemon about itself (console only): ``firewalld status``."""

    rid: int


@_register("daemon_status_report")
class StatusReport(NamedTuple):
    """The answer to :class:`StatusQuery`. ``policies``: one map per policy file and server
    section in use by a connected session (``path``: None for the bundled one; ``server``;
    ``sessions``: how many; ``error``: why it does not load, or None; ``warnings``)."""

    rid: int
    pid: int
    version: str
    started: float
    socket_path: str
    state_dir: str
    sessions: int
    pending: int
    policies: list[dict[str, Any]]


@_register("daemon_stop")
class StopDaemon(NamedTuple):
    """Ask the daemon to stop as on SIGTERM (console only): ``firewalld stop``. Answered with
    :class:`Ack` before it stops."""

    rid: int


@_register("ack")
class Ack(NamedTuple):
    """A request succeeded."""

    rid: int
    message: str = ""


@_register("error")
class Error(NamedTuple):
    """A request failed. ``code`` is one of the ``E_*`` constants."""

    rid: int
    code: str
    message: str


#: Any wire message.
Message = (
    Hello
    | Welcome
    | ClientInfo
    | Decide
    | ContinueCall
    | Verdict
    | Confirm
    | Confirmed
    | Outcome
    | ToolsListed
    | ToolDefinitions
    | ToolsHidden
    | PinsChanged
    | ListPins
    | PinList
    | ReviewTool
    | Resynced
    | Approved
    | Held
    | ApproveAction
    | Withdraw
    | ElicitationAnswer
    | LeaseGrant
    | LeasesRevoked
    | LeasesRevokedAck
    | LeaseAudit
    | ListPending
    | PendingList
    | DenyAction
    | QueryLog
    | LogRows
    | Subscribe
    | Event
    | Ack
    | Error
    | ShowArguments
    | ArgumentsPiece
    | MakeGrant
    | PreviewRule
    | RulePreview
    | ListGrants
    | GrantList
    | RevokeGrant
    | StatusQuery
    | StatusReport
    | StopDaemon
)

E_BAD_REQUEST = "bad_request"
E_FORBIDDEN = "forbidden"
E_NOT_FOUND = "not_found"
E_LIMIT = "limit"
E_VERSION = "version"
E_INTERNAL = "internal"


# --------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """Serialise ``message`` into one frame (length prefix included)."""
    body: dict[str, Any] = dict(zip(message._fields, message, strict=False))  # a tuple: same length
    body["t"] = _TAGS[type(message)]
    payload: bytes = msgpack.packb(body, use_bin_type=True)
    if len(payload) > MAX_FRAME:
        raise FrameTooLarge(f"message of {len(payload)} bytes is over the {MAX_FRAME}-byte frame limit")
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes | memoryview) -> Message:
    """Turn one frame's payload (without its length prefix) into a message.

    Raises:
        ProtocolError: the payload is not msgpack, not a map, has an unknown tag, or a field of
            the wrong type.
    """
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if type(body) is not dict:
        raise ProtocolError("a frame must hold a map")
    tag = body.pop("t", None)
    spec = _SPECS.get(tag) if type(tag) is str else None
    if spec is None:
        raise ProtocolError(f"unknown message type {tag!r}")
    cls, fields = spec
    for name, value in body.items():
        allowed = fields.get(name)
        if allowed is None:
            raise ProtocolError(f"{tag}: unknown field(s) {sorted(str(k) for k in body if k not in fields)}")
        # Exact types (msgpack makes no subclasses): True is never a number, nor 1 a bool.
        if type(value) not in allowed:
            raise ProtocolError(f"{tag}.{name}: unexpected {type(value).__name__}")
    try:
        message: Message = cls(**body)
    except TypeError as exc:  # a field without a default is missing
        raise ProtocolError(f"{tag}: {exc}") from None
    return message


class FrameDecoder:
    """Incremental frame splitter: feed it bytes, get whole messages back.

    ``max_frame`` may be changed between feeds (the daemon accepts only a small hello first).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held of frames not yet complete (0 between whole frames)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message now complete, in order.

        Raises:
            FrameTooLarge: a frame announced a size over the limit.
            ProtocolError: a complete frame did not decode.
        """
        if not self._buffer and len(data) > _HEADER.size:  # the usual case: exactly one frame
            (size,) = _HEADER.unpack_from(data)
            if len(data) == _HEADER.size + size and size <= self.max_frame:
                return [decode(data[_HEADER.size :])]
        self._buffer += data
        out: list[Message] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > self.max_frame:
                self._buffer = bytearray()  # refused from its header: nothing more is kept
                raise FrameTooLarge(f"frame of {size} bytes is over the {self.max_frame}-byte limit")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            # Decoded from a view, not a copy: a 90 MB frame costs its buffer once, not three times.
            with memoryview(self._buffer) as view:
                message = decode(view[_HEADER.size : end])
            if end == len(self._buffer):
                self._buffer = bytearray()  # give a large buffer back rather than keep its capacity
            else:
                del self._buffer[:end]
            out.append(message)
        return out


# --------------------------------------------------------------------------------------------
# Where things live. MCP clients start servers with only HOME, LOGNAME, PATH, SHELL, TERM and
# USER in the environment, so the defaults depend on HOME (and the uid) alone; the shim, the
# daemon and the console all call these same functions and agree.
# --------------------------------------------------------------------------------------------

APP = "mcp-action-firewall"
#: sun_path is 108 bytes on Linux and 104 on macOS; keep a margin.
_MAX_SOCKET_PATH = 100


def home_dir(environ: Mapping[str, str] | None = None) -> str:
    """The user's home: ``$HOME``, else the password database."""
    env = os.environ if environ is None else environ
    home = env.get("HOME")
    return home if home else pwd.getpwuid(os.getuid()).pw_dir


def default_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon keeps its database, lock and logs: ``$HOME/.local/state/mcp-action-firewall``."""
    return os.path.join(home_dir(environ), ".local", "state", APP)


def default_config_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the user's policy lives by default: ``$HOME/.config/mcp-action-firewall``."""
    return os.path.join(home_dir(environ), ".config", APP)


def default_socket_path(environ: Mapping[str, str] | None = None) -> str:
    """The daemon's socket: in the state directory, or under /tmp when that path is too long.

    The /tmp fallback is named after the uid and a hash of HOME, so two homes of one user (as in
    tests) never share a socket; its directory is created 0700 and its owner checked.
    """
    env = os.environ if environ is None else environ
    if env.get("FIREWALL_SOCKET"):
        return env["FIREWALL_SOCKET"]
    path = os.path.join(default_state_dir(env), "firewalld.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    import hashlib  # only on this rare path: the shim's start-up is a budget

    digest = hashlib.sha256(home_dir(env).encode()).hexdigest()[:12]
    return f"/tmp/{APP}-{os.getuid()}-{digest}/firewalld.sock"


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and parents) with mode 0700 and check that we own it and nobody else can enter.

    Raises:
        PermissionError: the directory exists but belongs to someone else or is open to others.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to us; refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
