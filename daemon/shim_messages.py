"""The wire messages of the handshake (every peer opens with :class:`Hello`), of a shim's requests
and their answers, and of leases. Registered with their tags in :mod:`daemon.message_registry`;
use them as ``daemon.protocol.X``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from daemon.message_registry import _register

PROTOCOL_VERSION = 1


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
