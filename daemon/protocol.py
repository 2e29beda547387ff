"""The wire protocol shared by the shim, the daemon and the console.

Sans-IO: this module only turns messages into bytes and bytes into messages. It imports the stdlib
and msgpack, nothing else, because the shim imports it and the shim's start-up time is a budget;
so do the modules it re-exports from: the messages themselves (:mod:`daemon.shim_messages`,
:mod:`daemon.console_messages`, registered by :mod:`daemon.message_registry`) and where the
socket lives (:mod:`daemon.paths`). Every process names them ``daemon.protocol.X``.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack: a map whose ``t``
key names the message type. Every connection opens with :class:`Hello` from the peer and
:class:`Welcome` (or :class:`Error`) from the daemon. Requests carry a ``rid`` chosen by the
peer; the daemon's answer carries the same ``rid``.

Exceptions::

    ProtocolError        a frame or message that breaks the rules (the connection is closed)
    └── FrameTooLarge    a frame announced a size over the limit
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from daemon.console_messages import (
    Ack,
    ApproveAction,
    ArgumentsPiece,
    DenyAction,
    Error,
    Event,
    GrantList,
    ListGrants,
    ListPending,
    ListPins,
    LogRows,
    MakeGrant,
    PendingList,
    PinList,
    PreviewRule,
    QueryLog,
    ReviewTool,
    RevokeGrant,
    RulePreview,
    ShowArguments,
    StatusQuery,
    StatusReport,
    StopDaemon,
    Subscribe,
)
from daemon.message_registry import _SPECS, _TAGS, tag_of
from daemon.paths import (
    APP,
    default_config_dir,
    default_socket_path,
    default_state_dir,
    ensure_private_dir,
    home_dir,
)
from daemon.shim_messages import (
    ALLOW,
    APPROVE,
    DENY,
    PROTOCOL_VERSION,
    Approved,
    ClientInfo,
    Confirm,
    Confirmed,
    ContinueCall,
    Decide,
    ElicitationAnswer,
    Held,
    Hello,
    LeaseAudit,
    LeaseGrant,
    LeasesRevoked,
    LeasesRevokedAck,
    Outcome,
    PinsChanged,
    Resynced,
    ToolDefinitions,
    ToolsHidden,
    ToolsListed,
    Verdict,
    Welcome,
    Withdraw,
)

#: Everything named ``daemon.protocol.X``, the messages and path rules included.
__all__ = [
    "ALLOW",
    "APP",
    "APPROVE",
    "Ack",
    "ApproveAction",
    "Approved",
    "ArgumentsPiece",
    "ClientInfo",
    "Confirm",
    "Confirmed",
    "ContinueCall",
    "DENY",
    "Decide",
    "DenyAction",
    "E_BAD_REQUEST",
    "E_FORBIDDEN",
    "E_INTERNAL",
    "E_LIMIT",
    "E_NOT_FOUND",
    "E_VERSION",
    "ElicitationAnswer",
    "Error",
    "Event",
    "FrameDecoder",
    "FrameTooLarge",
    "GrantList",
    "Held",
    "Hello",
    "LeaseAudit",
    "LeaseGrant",
    "LeasesRevoked",
    "LeasesRevokedAck",
    "ListGrants",
    "ListPending",
    "ListPins",
    "LogRows",
    "MAX_FRAME",
    "MakeGrant",
    "Message",
    "Outcome",
    "PROTOCOL_VERSION",
    "PendingList",
    "PinList",
    "PinsChanged",
    "PreviewRule",
    "ProtocolError",
    "QueryLog",
    "ROLE_AUDIT",
    "ROLE_CONSOLE",
    "ROLE_SHIM",
    "Resynced",
    "ReviewTool",
    "RevokeGrant",
    "RulePreview",
    "ShowArguments",
    "StatusQuery",
    "StatusReport",
    "StopDaemon",
    "Subscribe",
    "ToolDefinitions",
    "ToolsHidden",
    "ToolsListed",
    "Verdict",
    "Welcome",
    "Withdraw",
    "decode",
    "default_config_dir",
    "default_socket_path",
    "default_state_dir",
    "encode",
    "ensure_private_dir",
    "home_dir",
    "tag_of",
]

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
