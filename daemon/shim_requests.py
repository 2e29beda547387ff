"""What a shim may ask of firewalld, and how each request is answered.

A shim may only judge calls, confirm codes, withdraw actions and pass on its client's dialog answers
(where the policy allows it, :mod:`daemon.elicitation`) *of its own session*; it never receives a
code. A batch of requests is answered in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from daemon import failpoints
from daemon import protocol as p
from daemon.housekeeping import INGEST_AFTER
from daemon.pending import OUTCOMES
from daemon.sessions import Session
from daemon.state import DaemonState

log = logging.getLogger("firewalld")

#: A call bigger than this (bytes of JSON) is judged on a worker thread, off the event loop.
BIG_CALL = 256 * 1024


class ShimRequests(DaemonState):
    """The handlers of a shim's requests."""

    def _shim_batch(self, session: Session, batch: list[p.Message]) -> list[p.Message]:
        """Answer a batch: one transaction, committed before the answers are returned to be sent."""
        if not batch:
            return []
        replies: list[p.Message] = []
        events: list[p.Event] = []
        self._uncommitted_acks.clear()
        try:
            with self.store.transaction():
                for msg in batch:
                    self._shim_request(session, msg, replies, events)
        except BaseException:
            self._uncommitted_acks.clear()
            self.leases.rewind(session.session_id)  # no record of this batch was committed
            raise
        for session_id, rid, records in self._uncommitted_acks:  # committed: the shim may forget them
            self._to_ack(session_id, rid, records)
        self._uncommitted_acks.clear()
        if any(isinstance(r, p.Confirmed) and r.ok for r in replies):
            failpoints.hit("confirm.committed")
        for event in events:
            self._post(event)
        if self.store.spooled >= INGEST_AFTER:
            self._ingest.set()
        return replies

    def _prepare(self, session: Session, batch: list[p.Message]) -> Awaitable[None] | None:
        """For a batch with a huge call in it: judge those calls on a worker thread (parsing,
        self-protection and policy cost seconds for tens of MB of small strings), so the loop goes
        on serving every other session meanwhile. The batch is answered when they are judged."""
        big = [m for m in batch if isinstance(m, p.Decide) and len(m.params) > BIG_CALL]
        if not big:
            return None

        async def judge_all() -> None:
            loop = asyncio.get_running_loop()
            for msg in big:
                self._judged[id(msg)] = await loop.run_in_executor(None, self.decisions.prepare(session, msg))

        return judge_all()

    def _shim_request(
        self, session: Session, msg: p.Message, replies: list[p.Message], events: list[p.Event]
    ) -> None:
        match msg:
            case p.Decide():
                judged = self._judged.pop(id(msg), None) or self.decisions.prepare(session, msg)()
                verdict = self.decisions.decide(session, msg, judged)
                if verdict.action == p.APPROVE:
                    if self._consoles:
                        verdict = verdict._replace(watched=True)  # someone could approve it as it waits
                    if self.elicitations.permitted(session):
                        verdict = verdict._replace(elicit=True)  # the client's dialog may approve it
                elif verdict.action == p.ALLOW and session.leases:
                    grant = self.leases.offer(session, judged, verdict)
                    if grant is not None:
                        replies.append(grant)
                replies.append(verdict)
                self._audit_dirty = True
                if verdict.action != p.ALLOW:
                    events.append(p.Event("pending", verdict.action_id))
            case p.Confirm():
                replies.append(self.decisions.confirm(session, msg))
                events.append(p.Event("pending", "confirm"))
            case p.ContinueCall():
                verdict = self.decisions.continue_call(session, msg)
                replies.append(verdict)
                if verdict.action != p.ALLOW:
                    events.append(p.Event("pending", verdict.action_id))
            case p.Outcome():
                state = msg.state if msg.state in OUTCOMES else "ran"
                if self.pending.record_outcome(session.session_id, msg.action_id, state, msg.ok, msg.detail):
                    events.append(p.Event("pending" if state == "not_run" else "audit", msg.action_id))
                if msg.rid:
                    replies.append(p.Ack(msg.rid))
            case p.Resynced():
                if self.pending.resync(session.session_id):
                    events.append(p.Event("pending", "reopened"))
            case p.Held():
                row = self.store.get_pending(msg.action_id)
                if row is not None and row.session_id == session.session_id and msg.seconds > 0:
                    self._held[msg.action_id] = time.time() + min(msg.seconds, 600.0)
                    if len(self._held) > 10_000:
                        now = time.time()
                        self._held = {a: t for a, t in self._held.items() if t > now}
                else:
                    self._held.pop(msg.action_id, None)
                events.append(p.Event("pending", msg.action_id))
            case p.ElicitationAnswer():
                answer = self.elicitations.answer(session, msg)
                replies.append(answer)
                if isinstance(answer, p.Confirmed | p.Ack):  # taken: the action is closed
                    self._held.pop(msg.action_id, None)
                    events.append(p.Event("pending", msg.action_id))
            case p.Withdraw():
                self._held.pop(msg.action_id, None)
                if self.pending.withdraw(session.session_id, msg.action_id):
                    events.append(p.Event("pending", msg.action_id))
            case p.ToolsListed():
                before = dict(session.tools)
                if msg.first_page:
                    session.tools.clear()
                for tool in msg.tools[:10_000]:
                    name, annotations = tool.get("name"), tool.get("annotations")
                    if isinstance(name, str) and isinstance(annotations, dict):
                        session.tools[name] = annotations
                if session.tools != before:  # trusted annotations may decide differently now
                    self.leases.revoke_session(session.session_id, self._shim_of.get(session.session_id))
            case p.ToolDefinitions():
                replies.append(self._tool_definitions(session, msg))
            case p.LeaseAudit():
                if self.leases.record(session, msg.calls):
                    self._audit_dirty = True
                self._uncommitted_acks.append((session.session_id, msg.rid, len(msg.calls)))
            case p.LeasesRevokedAck():
                peer = self._shim_of.get(session.session_id)
                if peer is not None:
                    self.leases.acknowledged(peer, msg.epoch)
            case p.ClientInfo():
                self.sessions.set_client(session, msg)
                events.append(p.Event("session", session.session_id))
            case _:
                replies.append(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a shim may not send {p.tag_of(msg)}")
                )

    def _tool_definitions(self, session: Session, msg: p.ToolDefinitions) -> p.ToolsHidden:
        """Compare a listed page with the pins; the answer names the tools to hide."""
        before = dict(session.tools)
        if msg.first_page:
            session.tools.clear()
        policy, _ = self.policies.get(session.config_path, session.server)
        new_tools = policy.new_tools if policy is not None else "quarantine"
        annotations: dict[str, dict[str, Any]] = {}
        self._pin_reporter = session.session_id
        try:
            hidden = self.pins.observe(session, msg.tools, msg.first_page, new_tools, annotations, msg.more)
        finally:
            self._pin_reporter = ""
        if len(session.tools) < 10_000:
            session.tools.update(annotations)
        if session.tools != before:  # trusted annotations may decide differently now
            self.leases.revoke_session(session.session_id, self._shim_of.get(session.session_id))
        return p.ToolsHidden(msg.rid, hidden)
