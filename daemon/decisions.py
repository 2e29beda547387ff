"""What firewalld answers a shim: judge a call, pause it, or check a code.

Synchronous on purpose: the connection handler runs a batch of these inside one database
transaction and sends the answers only after it commits, so every decision is on disk before
the call it allows can be forwarded.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata

from daemon import protocol as p
from daemon.pending import PendingActions
from daemon.policies import PolicyCache
from daemon.policy import Policy
from daemon.sessions import Session
from daemon.settings import DaemonSettings
from daemon.store import Store

log = logging.getLogger("firewalld")


class Decisions:
    """The daemon's answers to :class:`~daemon.protocol.Decide` and :class:`~daemon.protocol.Confirm`."""

    def __init__(
        self, settings: DaemonSettings, store: Store, pending: PendingActions, policies: PolicyCache
    ) -> None:
        self.settings = settings
        self.store = store
        self.pending = pending
        self.policies = policies

    def decide(self, session: Session, msg: p.Decide) -> p.Verdict:
        """Judge one call, record the decision, and pause it if it needs approval."""
        try:
            params = json.loads(msg.params.decode())  # str: json skips guessing the encoding
            tool = params["name"]
            arguments = params.get("arguments")
            if not isinstance(tool, str):
                raise TypeError("name")
        except (ValueError, KeyError, TypeError, AttributeError):
            return p.Verdict(msg.rid, p.DENY, "The call could not be read.", "malformed")
        policy, error = self.policies.get(session.config_path, session.server)
        if policy is None:
            reason = f"The firewall policy could not be loaded: {error}"
            return self._refuse(session, msg.rid, tool, reason, "policy-error")
        verdict = policy.decide(tool, arguments, session.tools.get(tool))
        if verdict.action == p.APPROVE:
            return self._pause(session, msg, tool, verdict.rule, verdict.reason, policy)
        detail = msg.params[:1000].decode("utf-8", "replace")
        self._record(session, tool, verdict.action, verdict.rule, detail)
        return p.Verdict(msg.rid, verdict.action, verdict.reason, verdict.rule)

    def _refuse(self, session: Session, rid: int, tool: str, reason: str, rule: str) -> p.Verdict:
        self._record(session, tool, p.DENY, rule, reason)
        return p.Verdict(rid, p.DENY, reason, rule)

    def _record(self, session: Session, tool: str, action: str, rule: str, detail: str | None) -> None:
        """Count an allow or a deny for the session and put it in the audit log."""
        if action == p.ALLOW:
            session.allowed += 1
        else:
            session.denied += 1
        self.store.audit(
            "decision",
            session_id=session.session_id,
            server=session.server,
            tool=tool,
            decision=action,
            rule=rule,
            detail=detail,
        )

    def _pause(
        self, session: Session, msg: p.Decide, tool: str, rule: str, reason: str, policy: Policy
    ) -> p.Verdict:
        if self.pending.open_count(session.session_id) >= self.settings.max_pending_per_session:
            refusal = "Too many actions of this session are already waiting for approval."
            return self._refuse(
                session, msg.rid, tool, refusal + " Ask the user to deal with them first.", "limit"
            )
        if not session.prompt_allowed(self.settings.max_prompts_per_minute, time.time()):
            session.flood_refused += 1
            refusal = (
                "Too many approval requests from this session in the last minute; the firewall refuses more "
                "for now. Do not repeat the request: ask the user about the ones already waiting."
            )
            return self._refuse(session, msg.rid, tool, refusal, "flood")
        row = self.pending.create(
            session_id=session.session_id,
            server=session.server,
            tool=tool,
            params=msg.params,
            rule=rule,
            reason=reason,
            code_length=policy.otp_length,
            ttl=policy.otp_ttl_seconds,
            attempts=policy.otp_attempt_count,
        )
        session.paused += 1
        log.info("paused %s in %s as %s (%s)", tool, session.session_id, row.action_id, rule)
        return p.Verdict(msg.rid, p.APPROVE, reason, rule, row.action_id, row.deadline, row.attempts_left)

    def confirm(self, session: Session, msg: p.Confirm) -> p.Confirmed:
        """Check a code typed by the user; hand back the frozen call it approves."""
        result = self.pending.confirm(session.session_id, self._clean_code(session, msg.otp))
        if result.ok and result.action is not None:
            return p.Confirmed(msg.rid, True, "approved", result.action.action_id, result.action.params)
        return p.Confirmed(msg.rid, False, result.message)

    def _clean_code(self, session: Session, otp: str) -> str:
        """The code as typed by a human: full-width digits folded, a lost leading zero restored."""
        code = unicodedata.normalize("NFKC", otp)[:64]
        policy, _ = self.policies.get(session.config_path, session.server)
        if policy is not None and code.isdigit() and len(code) < policy.otp_length:
            code = code.zfill(policy.otp_length)  # the agent sent the code as a JSON number
        return code
