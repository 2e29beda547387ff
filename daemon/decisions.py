"""What firewalld answers a shim: judge a call, pause it, or check a code.

Synchronous on purpose: the connection handler runs a batch of these inside one database
transaction and sends the answers only after it commits, so every decision is on disk before
the call it allows can be forwarded.
"""

from __future__ import annotations

import json
import logging
import os
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from daemon import protocol as p
from daemon.grants import Grants
from daemon.pending import PendingActions
from daemon.pins import RULE as PIN_RULE
from daemon.pins import Pins
from daemon.policies import PolicyCache
from daemon.policy import Policy
from daemon.policy import Verdict as PolicyVerdict
from daemon.selfprotect import SelfProtection
from daemon.sessions import Session
from daemon.settings import DaemonSettings
from daemon.store import Store

log = logging.getLogger("firewalld")

#: The rule name of the built-in self-protection, in verdicts and the audit log.
SELF_PROTECTION = "builtin.self_protection"


@dataclass(frozen=True, slots=True)
class Judged:
    """What :meth:`Decisions.prepare` found: nothing recorded yet."""

    tool: str | None
    """The tool name, or None if the call could not be read."""
    refusal: str | None
    """Why the built-in self-protection denies it, or None."""
    verdict: tuple[Policy, PolicyVerdict] | None
    """The policy and its verdict (None if refused, unreadable, or the policy failed to load)."""
    policy_error: str | None
    arguments: object = None
    """The call's arguments, as parsed (for the grants)."""


class Decisions:
    """The daemon's answers to :class:`~daemon.protocol.Decide` and :class:`~daemon.protocol.Confirm`."""

    def __init__(
        self,
        settings: DaemonSettings,
        store: Store,
        pending: PendingActions,
        policies: PolicyCache,
        guard: SelfProtection,
        grants: Grants | None = None,
        pins: Pins | None = None,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.pins = pins
        self.store = store
        self.pending = pending
        self.policies = policies
        self.guard = guard
        self._bases: dict[str, tuple[str, ...]] = {}  # session -> directories on its server's command line

    def _bases_of(self, session: Session) -> tuple[str, ...]:
        """The directories on the session's server command line (a filesystem server's roots)."""
        bases = self._bases.get(session.session_id)
        if bases is None:
            if len(self._bases) > 10_000:
                self._bases.clear()
            bases = self._bases[session.session_id] = tuple(
                a for a in session.target if os.path.isabs(a) and os.path.isdir(a)
            )
        return bases

    def _self_protection(self, session: Session, arguments: object) -> str | None:
        """Why the built-in rule denies a call (see :mod:`daemon.selfprotect`), or None."""
        files = (session.config_path,) if session.config_path else ()
        hit = self.guard.check(arguments, session.cwd, self._bases_of(session), files)
        return hit.reason() if hit is not None else None

    def prepare(self, session: Session, msg: p.Decide) -> Callable[[], Judged]:
        """The pure part of :meth:`decide` (parse, self-protection, policy), as a function that
        touches nothing the event loop changes, so a huge call can be judged on a worker thread
        while every other session is served. Its result is handed to :meth:`decide`."""
        policy, error = self.policies.get(session.config_path, session.server)
        tools = dict(session.tools)
        cwd, bases = session.cwd, self._bases_of(session)
        files = (session.config_path,) if session.config_path else ()

        def judge() -> Judged:
            try:
                params = json.loads(msg.params.decode())  # str: json skips guessing the encoding
                tool = params["name"]
                arguments = params.get("arguments")
                if not isinstance(tool, str):
                    raise TypeError("name")
            except (ValueError, KeyError, TypeError, AttributeError):
                return Judged(None, None, None, None)
            hit = self.guard.check(arguments, cwd, bases, files)
            if hit is not None:
                return Judged(tool, hit.reason(), None, None)
            if policy is None:
                return Judged(tool, None, None, f"The firewall policy could not be loaded: {error}")
            verdict = policy.decide(tool, arguments, tools.get(tool))
            return Judged(tool, None, (policy, verdict), None, arguments)

        return judge

    def decide(self, session: Session, msg: p.Decide, judged: Judged | None = None) -> p.Verdict:
        """Judge one call (or take the judgement :meth:`prepare` made), record the decision, and
        pause it if it needs approval."""
        if judged is None:
            judged = self.prepare(session, msg)()
        tool = judged.tool
        if tool is None:
            return p.Verdict(msg.rid, p.DENY, "The call could not be read.", "malformed")
        if judged.refusal is not None:
            return self._refuse(session, msg.rid, tool, judged.refusal, SELF_PROTECTION)
        quarantined = self.pins.refusal(session, tool) if self.pins is not None else None
        if quarantined is not None:
            return self._refuse(session, msg.rid, tool, quarantined, PIN_RULE)
        if judged.verdict is None:
            return self._refuse(session, msg.rid, tool, judged.policy_error or "", "policy-error")
        policy, verdict = judged.verdict
        if verdict.action == p.APPROVE:
            granted = self._granted(session, msg.rid, tool, judged.arguments, msg.params)
            if granted is not None:
                return granted
            return self._pause(session, msg.rid, msg.params, tool, verdict.rule, verdict.reason, policy)
        detail = msg.params[:1000].decode("utf-8", "replace")
        self._record(session, tool, verdict.action, verdict.rule, detail)
        return p.Verdict(msg.rid, verdict.action, verdict.reason, verdict.rule)

    def continue_call(self, session: Session, msg: p.ContinueCall) -> p.Verdict:
        """Judge the retry of an approved call that adds input the human has not seen.

        It is judged as the approved call with one more argument, ``inputResponses``; ``approve``
        pauses it as a new action (the console shows that input), ``allow`` lets it run now.
        """
        row = self.store.get_pending(msg.action_id)
        try:
            params = json.loads(msg.params.decode())
            frozen = json.loads(row.params) if row is not None else None
            tool = params["name"]
            responses = params["inputResponses"]
            arguments = params.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise TypeError("arguments")
        except (ValueError, KeyError, TypeError, AttributeError):
            return p.Verdict(msg.rid, p.DENY, "The retry could not be read.", "malformed")
        if (
            row is None
            or frozen is None
            or row.session_id != session.session_id
            or row.status != "approved"
            or tool != frozen.get("name")
            or arguments != (frozen.get("arguments") or {})
        ):
            reason = "This retry does not continue an approved call of this chat."
            return self._refuse(session, msg.rid, str(tool), reason, "continuation")
        if "inputResponses" in arguments:
            reason = "The approved call already has an argument called inputResponses: the retry's input "
            reason += "cannot be told apart from it."
            return self._refuse(session, msg.rid, tool, reason, "continuation")
        quarantined = self.pins.refusal(session, tool) if self.pins is not None else None
        if quarantined is not None:
            return self._refuse(session, msg.rid, tool, quarantined, PIN_RULE)
        judged = {**arguments, "inputResponses": responses}
        refusal = self._self_protection(session, judged)
        if refusal is not None:
            return self._refuse(session, msg.rid, tool, refusal, SELF_PROTECTION)
        policy, error = self.policies.get(session.config_path, session.server)
        if policy is None:
            reason = f"The firewall policy could not be loaded: {error}"
            return self._refuse(session, msg.rid, tool, reason, "policy-error")
        verdict = policy.decide(tool, judged, session.tools.get(tool))
        rule = f"{verdict.rule} (the retry of {row.action_id} adds input)"
        if verdict.action == p.APPROVE:
            granted = self._granted(session, msg.rid, tool, judged, msg.params)
            if granted is not None:
                return granted
            reason = (
                f"The server asked for more input to finish the approved call {row.action_id}, and the "
                f"retry carries input the user has not approved. {verdict.reason}"
            )
            return self._pause(session, msg.rid, msg.params, tool, rule, reason, policy)
        self._record(session, tool, verdict.action, rule, msg.params[:1000].decode("utf-8", "replace"))
        return p.Verdict(msg.rid, verdict.action, verdict.reason, rule)

    def _granted(
        self, session: Session, rid: int, tool: str, arguments: object, params: bytes
    ) -> p.Verdict | None:
        """Allow a call that needs approval when a grant covers it (audited with the grant's id,
        which never goes to the shim: the agent learns only that a grant let it through)."""
        if self.grants is None:
            return None
        grant = self.grants.find(session.session_id, session.server, session.config_path, tool, arguments)
        if grant is None:
            return None
        rule = f"grant {grant.grant_id} ({grant.scope})"
        self._record(session, tool, p.ALLOW, rule, params[:1000].decode("utf-8", "replace"))
        return p.Verdict(rid, p.ALLOW, "Allowed by a grant the user made in the firewall console.", "grant")

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
        self, session: Session, rid: int, params: bytes, tool: str, rule: str, reason: str, policy: Policy
    ) -> p.Verdict:
        if self.pending.open_count(session.session_id) >= self.settings.max_pending_per_session:
            refusal = "Too many actions of this session are already waiting for approval."
            return self._refuse(
                session, rid, tool, refusal + " Ask the user to deal with them first.", "limit"
            )
        if not session.prompt_allowed(self.settings.max_prompts_per_minute, time.time()):
            session.flood_refused += 1
            refusal = (
                "Too many approval requests from this session in the last minute; the firewall refuses more "
                "for now. Do not repeat the request: ask the user about the ones already waiting."
            )
            return self._refuse(session, rid, tool, refusal, "flood")
        held, limit = self.store.paused_bytes(), self.settings.max_paused_bytes
        if held + len(params) > limit:
            refusal = (
                f"This call was not paused and will not run: its {len(params):,} bytes of arguments, with "
                f"the {held:,} bytes of paused calls the firewall already holds, go past its limit of "
                f"{limit:,} bytes (FIREWALLD_MAX_PAUSED_BYTES). Ask the user to approve or deny the calls "
                "waiting in the firewall console first."
            )
            return self._refuse(session, rid, tool, refusal, "limit")
        row = self.pending.create(
            session_id=session.session_id,
            server=session.server,
            tool=tool,
            params=params,
            rule=rule,
            reason=reason,
            code_length=policy.otp_length,
            ttl=policy.otp_ttl_seconds,
            attempts=policy.otp_attempt_count,
        )
        session.paused += 1
        log.info("paused %s in %s as %s (%s)", tool, session.session_id, row.action_id, rule)
        return p.Verdict(rid, p.APPROVE, reason, rule, row.action_id, row.deadline, row.attempts_left)

    def confirm(self, session: Session, msg: p.Confirm) -> p.Confirmed:
        """Check a code typed by the user; hand back the frozen call it approves."""
        result = self.pending.confirm(session.session_id, self._clean_code(session, msg.otp))
        if result.ok and result.action is not None:
            row = result.action
            quarantined = self.pins.refusal(session, row.tool) if self.pins is not None else None
            if quarantined is not None:  # approved before the definition changed: it waits again
                self.pending.record_outcome(session.session_id, row.action_id, "not_run", False, quarantined)
                text = f"{quarantined} The paused call {row.action_id} waits for approval again meanwhile."
                return p.Confirmed(msg.rid, False, text)
            return p.Confirmed(msg.rid, True, "approved", row.action_id, row.params)
        return p.Confirmed(msg.rid, False, result.message)

    def _clean_code(self, session: Session, otp: str) -> str:
        """The code as typed by a human: full-width digits folded, a lost leading zero restored."""
        code = unicodedata.normalize("NFKC", otp)[:64]
        policy, _ = self.policies.get(session.config_path, session.server)
        if policy is not None and code.isdigit() and len(code) < policy.otp_length:
            code = code.zfill(policy.otp_length)  # the agent sent the code as a JSON number
        return code
