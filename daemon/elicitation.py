"""Approval through the MCP client's own dialog (``elicitation/create``), when the policy allows it.

The shim may show a paused call in the client's dialog only when the daemon says so in the
:class:`~daemon.protocol.Verdict` (``elicit``), and the human's answer counts only when the daemon
takes it (:class:`~daemon.protocol.ElicitationAnswer`): for a pending action of that shim's own
session, before its deadline, while the session's server section has ``approve_via_elicitation``
for the session's client. Everything else is refused and audited as ``elicitation_refused``: a
shim that was never offered the channel cannot use it to approve anything.

An approval here is audited as ``confirm_ok`` "approved in the client's own dialog (elicitation)",
distinct from a console approval or a code; a decline as ``denied``. The action is closed once,
whichever approval comes first (a console's, a code's or the dialog's); the others are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from daemon import protocol as p
from daemon.pending import PendingActions
from daemon.policies import PolicyCache
from daemon.sessions import Session
from daemon.store import Store

#: How the audit log names this way of approving (``approved in the ...``).
WHO = "client's own dialog (elicitation)"


class ElicitationApprovals:
    """The daemon's side of approval through the client's dialog."""

    def __init__(
        self,
        store: Store,
        pending: PendingActions,
        policies: PolicyCache,
        quarantined: Callable[[Session, str], str | None] = lambda session, tool: None,
    ) -> None:
        self._store = store
        self._pending = pending
        self._policies = policies
        #: Why a tool's calls are held back (its definition is under review, see daemon.pins), or None.
        self._quarantined = quarantined

    def permitted(self, session: Session) -> bool:
        """Whether the policy lets this session's client dialog approve its paused calls."""
        policy, _ = self._policies.get(session.config_path, session.server)
        return policy is not None and policy.approves_via_elicitation(session.client_name)

    def answer(self, session: Session, msg: p.ElicitationAnswer) -> p.Message:
        """Take the human's answer from the client's dialog, or refuse it (and audit why)."""
        row = self._store.get_pending(msg.action_id)
        if row is None or row.session_id != session.session_id:  # another chat's: as if unknown
            return self._refuse(
                session, msg, p.E_NOT_FOUND, f"no pending action {msg.action_id} in this chat"
            )
        if row.status != "pending" or row.deadline <= time.time():
            why = f"{row.action_id} is no longer waiting for approval ({row.status})"
            return self._refuse(session, msg, p.E_NOT_FOUND, why)
        if not self.permitted(session):
            why = (
                f"approval in the client's dialog is not enabled for server {session.server!r} and "
                f"client {session.client_name!r} (approve_via_elicitation)"
            )
            return self._refuse(session, msg, p.E_FORBIDDEN, why)
        if not msg.accepted:
            if self._pending.deny(row.action_id, f"declined in the {WHO}") is None:
                return p.Error(msg.rid, p.E_NOT_FOUND, f"{row.action_id} is no longer waiting for approval")
            return p.Ack(msg.rid, f"denied {row.action_id}")
        quarantined = self._quarantined(session, row.tool)
        if quarantined is not None:  # paused before the definition changed: it waits for the review
            return self._refuse(session, msg, p.E_FORBIDDEN, quarantined)
        approved = self._pending.approve(row.action_id, WHO)
        if approved is None:
            return p.Error(msg.rid, p.E_NOT_FOUND, f"{row.action_id} is no longer waiting for approval")
        return p.Confirmed(msg.rid, True, "approved", approved.action_id, approved.params)

    def _refuse(self, session: Session, msg: p.ElicitationAnswer, code: str, why: str) -> p.Message:
        self._store.audit(
            "elicitation_refused",
            session_id=session.session_id,
            server=session.server,
            action_id=msg.action_id[:64],
            detail=("accept: " if msg.accepted else "decline: ") + why,
        )
        return p.Error(msg.rid, code, why)
