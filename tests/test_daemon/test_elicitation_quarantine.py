"""A dialog accept is refused for a tool whose definition is under review, as a typed code is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon import protocol as p
from daemon.codes import CodeBook
from daemon.decisions import Decisions
from daemon.elicitation import ElicitationApprovals
from daemon.pending import PendingActions
from daemon.policies import PolicyCache
from daemon.selfprotect import SelfProtection
from daemon.sessions import Session
from daemon.settings import DaemonSettings
from daemon.store import Store

POLICY = {"global": {"block_keywords": ["delete"]}, "servers": {"srv": {"approve_via_elicitation": True}}}


@pytest.mark.parametrize("under_review", [True, False])
def test_a_dialog_accept_waits_for_the_review(tmp_path: Path, under_review: bool) -> None:
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "policy.json"
    config.write_text(json.dumps(POLICY))
    settings = DaemonSettings(state_dir=str(state), socket_path=str(tmp_path / "s.sock"))
    store = Store(str(state / "firewall.db"))
    try:
        pending = PendingActions(store, CodeBook())
        policies = PolicyCache()
        guard = SelfProtection([(str(state), "state directory")], str(tmp_path))
        decisions = Decisions(settings, store, pending, policies, guard)
        session = Session("S-TEST", "srv", str(config), ["server"], str(tmp_path), os.getpid())
        params = json.dumps({"name": "delete_user", "arguments": {"id": 1}}).encode()
        verdict = decisions.decide(session, p.Decide(1, params))
        assert verdict.action == p.APPROVE
        held_back = "The definition of tool 'delete_user' changed."

        def quarantined(session: Session, tool: str) -> str | None:
            return held_back if under_review and tool == "delete_user" else None

        approvals = ElicitationApprovals(store, pending, policies, quarantined)
        answer = approvals.answer(session, p.ElicitationAnswer(2, verdict.action_id, True))
        row = store.get_pending(verdict.action_id)
        assert row is not None
        if under_review:
            assert isinstance(answer, p.Error) and answer.code == p.E_FORBIDDEN, answer
            assert row.status == "pending"  # it waits for the review, then for approval
        else:  # the same accept, nothing under review: approved with the frozen call
            assert isinstance(answer, p.Confirmed) and answer.ok, answer
            assert row.status != "pending"
    finally:
        store.close()
