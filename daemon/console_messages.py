"""The wire messages of a console's requests and their answers, and the two answers any request
may get (:class:`Ack`, :class:`Error`). Registered with their tags in :mod:`daemon.message_registry`;
use them as ``daemon.protocol.X``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from daemon.message_registry import _register

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
