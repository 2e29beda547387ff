"""Leases through real processes: a shim, the fixture server, firewalld and its audit log.

Allowed calls skip the daemon's round trip under a lease, and each still has its audit row; a
policy reload (and a grant or pin change, through the test trigger that calls
``verdicts_changed``) revokes the leases before the daemon says the revocation is complete; a
kill -9 of the daemon while leased calls flow loses no audit row.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    Daemon,
    connected_sessions,
    effects_of,
    fixture_shim,
    shim_command,
    wait_until,
    write_config,
)
from helpers.mcp_agent import FIXTURES, fixture_command
from helpers.wire import Peer, call, initialize, jline, notification

#: Allows delete_user by name alone (so it gets a lease), and records each run in the effects file.
ALLOW_DELETE = {"global": {"allow_prefixes": ["delete_user", "read_"], "block_keywords": []}}
#: The same, after the reload: delete_user needs approval.
PAUSE_DELETE = {"global": {"allow_prefixes": ["read_"], "block_keywords": ["delete"]}}


def start(daemon: Daemon, effects: Path, config: Path | None = None, *extra: str) -> Peer:
    """A shim around the fixture server, initialized."""
    peer = Peer(
        fixture_shim(effects, config=config, extra=extra), daemon.env, stderr=daemon.home / "shim.err"
    )
    peer.ask(initialize(0))
    peer.send(notification("notifications/initialized"))
    return peer


def lease_rows(daemon: Daemon) -> list[dict[str, Any]]:
    return [r for r in daemon.audit(5000) if (r.get("action_id") or "").startswith("lease:")]


def revocations(daemon: Daemon) -> list[dict[str, Any]]:
    return [r for r in daemon.audit(5000) if r["event"] == "leases_revoked"]


def ok(answer: dict[str, Any]) -> bool:
    result = answer.get("result")
    return isinstance(result, dict) and not result.get("isError")


def test_allowed_calls_run_under_a_lease_each_with_its_audit_row(daemon: Daemon, tmp_path: Path) -> None:
    """The first call is judged by the daemon and brings a lease; the next ones run under it,
    each with a ``lease:N`` audit row holding its arguments. A call whose arguments look like a
    path is judged by the daemon again."""
    with start(daemon, tmp_path / "fx") as peer:
        for i in range(1, 31):
            answer = peer.ask(call(i, "read_note", {"name": f"note{i}"}))
            assert ok(answer), answer
        answer = peer.ask(call(99, "read_note", {"name": "some/where"}))
        assert ok(answer), answer
        peer.close()
    rows = [r for r in daemon.audit(5000) if r["event"] == "decision"]
    leased = {r["detail"] for r in rows if (r.get("action_id") or "").startswith("lease:")}
    asked = {r["detail"] for r in rows if not (r.get("action_id") or "").startswith("lease:")}
    for i in range(1, 31):
        assert sum(f'"note{i}"' in d for d in leased | asked) == 1, f"note{i} has not exactly one row"
    assert len(leased) >= 25, "calls after the first should run under the lease"
    assert any("some/where" in d for d in asked), "a path-like argument must be judged by the daemon"
    assert all(r["decision"] == "allow" and r["rule"].endswith("(lease)") for r in lease_rows(daemon))


def flow_calls(peer: Peer, state: dict[str, Any], stop: threading.Event) -> None:
    """Call delete_user with ids 1, 2, 3... one after another until ``stop``; note each answer."""
    while not stop.is_set():
        state["next"] += 1
        msg_id = state["next"]
        answer = peer.ask(call(msg_id, "delete_user", {"id": msg_id}))
        state["answers"][msg_id] = answer


def test_no_call_after_a_completed_reload_uses_the_old_lease(daemon: Daemon, tmp_path: Path) -> None:
    """Calls flow under a lease; the policy file is changed (delete_user now needs approval) and
    the daemon reloads it (SIGHUP). From the moment the audit log says the revocation is complete
    (every shim acknowledged), no call that the agent sends runs: the server records none."""
    effects = tmp_path / "fx"
    config = write_config(tmp_path / "policy.json", ALLOW_DELETE)
    state: dict[str, Any] = {"next": 0, "answers": {}}
    stop = threading.Event()
    with start(daemon, effects, config) as peer:
        flow = threading.Thread(target=flow_calls, args=(peer, state, stop), daemon=True)
        flow.start()
        try:
            wait_until(lambda: len(lease_rows(daemon)) >= 20, what="calls under a lease")
            write_config(config, PAUSE_DELETE)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: revocations(daemon), what="the revocation to complete")
            first_after = state["next"] + 1  # every call from this one on was sent after completion
            wait_until(lambda: state["next"] > first_after + 30, what="calls after the reload")
        finally:
            stop.set()
            flow.join(30)
        peer.close()
    ran = {e["id"] for e in effects_of(effects)}
    assert ran, "calls ran before the reload"
    late = sorted(i for i in ran if i >= first_after)
    assert late == [], f"calls {late} ran under a revoked lease"
    assert not any(ok(a) for i, a in state["answers"].items() if i >= first_after)
    (row,) = revocations(daemon)
    assert "reloaded" in row["detail"] and "1 shim(s) acknowledged" in row["detail"]


def test_grant_or_pin_change_revokes_leases(home: Path, tmp_path: Path) -> None:
    """``verdicts_changed`` (what a grant or tool-pin change calls; here through the test trigger)
    voids the shim's lease: the next call is judged by the daemon again, then leased anew."""
    daemon = Daemon(home)
    daemon.env["FIREWALLD_FAILPOINTS"] = "sigusr2.verdicts_changed"
    daemon.start()
    try:
        with start(daemon, tmp_path / "fx") as peer:
            for i in range(1, 6):
                assert ok(peer.ask(call(i, "read_note", {"name": f"before{i}"})))
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGUSR2)
            wait_until(lambda: revocations(daemon), what="the revocation to complete")
            for i in range(6, 11):
                assert ok(peer.ask(call(i, "read_note", {"name": f"after{i}"})))
            peer.close()
        rows = {r["detail"]: r for r in daemon.audit(5000) if r["event"] == "decision"}

        def leased(name: str) -> bool:
            (row,) = [r for d, r in rows.items() if f'"{name}"' in d]
            return (row.get("action_id") or "").startswith("lease:")

        assert not leased("before1") and all(leased(f"before{i}") for i in range(2, 6))
        assert not leased("after6"), "the call after the revocation must be judged by the daemon"
        assert all(leased(f"after{i}") for i in range(7, 11)), "and the new verdict leased again"
        (row,) = revocations(daemon)
        assert "test trigger" in row["detail"]
    finally:
        daemon.stop()


def test_kill9_while_leased_calls_flow_loses_no_audit_row(daemon: Daemon, tmp_path: Path) -> None:
    """The daemon is frozen (SIGSTOP) while leased calls flow, so their records sit unread in its
    socket, then killed (-9) and started again. After the shim reconnects, every call that ran has
    exactly one audit row; calls made while the daemon was dead did not run (fail closed)."""
    effects = tmp_path / "fx"
    config = write_config(tmp_path / "policy.json", ALLOW_DELETE)
    with start(daemon, effects, config, "--decision-timeout", "1") as peer:
        msg_id = 0

        def calls(count: int) -> None:
            nonlocal msg_id
            for _ in range(count):
                msg_id += 1
                peer.ask(call(msg_id, "delete_user", {"id": msg_id}))

        calls(50)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGSTOP)
        calls(100)  # leased: they run while the daemon reads nothing
        daemon.kill9()
        calls(5)  # no daemon: these must not run
        daemon.start()
        wait_until(lambda: connected_sessions(daemon), what="the shim to reconnect")
        calls(50)
        peer.close()
    ran = [e["id"] for e in effects_of(effects)]
    assert len(ran) >= 190, f"only {len(ran)} calls ran"
    assert not set(range(151, 156)) & set(ran), "calls ran while no daemon was there"
    audited: list[int] = []
    for row in daemon.audit(5000):
        if row["event"] == "decision" and row["decision"] == "allow" and row["tool"] == "delete_user":
            audited += [int(n) for n in re.findall(r'"id":(\d+)', row["detail"] or "")]
    assert sorted(audited) == sorted(ran), "every call that ran has exactly one audit row"
    assert len(lease_rows(daemon)) >= 150


@pytest.mark.parametrize(
    "argument", ["~", "a/b", "..", ".ssh", "$HOME", "%2e%2e", "file:x", "ｆｉｌｅ：x", "a∕b"]
)
def test_path_like_arguments_are_always_judged(daemon: Daemon, tmp_path: Path, argument: str) -> None:
    """With a lease held, a call whose argument has any path-like feature is asked about."""
    with start(daemon, tmp_path / "fx") as peer:
        assert ok(peer.ask(call(1, "read_note", {"name": "first"})))
        assert ok(peer.ask(call(2, "read_note", {"name": "second"})))
        peer.ask(call(3, "read_note", {"name": argument}))
        peer.close()
    rows = [r for r in daemon.audit(5000) if r["event"] == "decision"]
    (second,) = [r for r in rows if '"second"' in (r["detail"] or "")]
    assert (second.get("action_id") or "").startswith("lease:")
    third = [r for r in rows if json.dumps(argument, ensure_ascii=False)[1:-1] in (r["detail"] or "")]
    third = [r for r in third if '"first"' not in r["detail"] and '"second"' not in r["detail"]]
    assert third and not (third[0].get("action_id") or "").startswith("lease:")


def test_no_leases_asks_about_every_call(daemon: Daemon, tmp_path: Path) -> None:
    """``--no-leases``: the shim never takes a lease, so every call has a decision of the daemon's."""
    with start(daemon, tmp_path / "fx", None, "--no-leases") as peer:
        for i in range(1, 11):
            assert ok(peer.ask(call(i, "read_note", {"name": f"n{i}"})))
        peer.close()
    rows = [r for r in daemon.audit(5000) if r["event"] == "decision"]
    assert len(rows) == 10 and lease_rows(daemon) == []


def test_a_listing_that_reveals_trusted_hints_revokes_the_chats_leases(
    daemon: Daemon, tmp_path: Path
) -> None:
    """With ``trust_annotations``, a tool called before the chat listed its tools is judged without
    its hints (allowed by prefix here, so it gets a lease); once the listing shows it declares
    ``destructiveHint: true``, its calls need approval, so the lease must not be used again."""
    policy = {
        "global": {"allow_prefixes": ["delete_user", "read_"], "block_keywords": []},
        "servers": {"fx": {"trust_annotations": True}},
    }
    config = write_config(tmp_path / "policy.json", policy)
    peer = Peer(
        fixture_shim(tmp_path / "fx", config=config, name="fx"), daemon.env, stderr=daemon.home / "shim.err"
    )
    with peer:
        peer.ask(initialize(0))
        peer.send(notification("notifications/initialized"))
        for i in (1, 2, 3):  # the first brings a lease, the next run under it
            assert ok(peer.ask(call(i, "delete_user", {"id": i})))
        assert lease_rows(daemon), "the calls before the listing should have used a lease"
        listing = peer.ask({"jsonrpc": "2.0", "id": 10, "method": "tools/list"})
        assert any(t["name"] == "delete_user" for t in listing["result"]["tools"])
        answer = peer.ask(call(11, "delete_user", {"id": 11}))
        assert "PAUSED_FOR_APPROVAL" in json.dumps(answer), answer
        peer.close()
    assert [e["id"] for e in effects_of(tmp_path / "fx")] == [1, 2, 3]


def test_a_shim_that_does_not_acknowledge_is_cut_off_and_uses_no_old_lease(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A shim frozen (SIGSTOP) through a reload cannot acknowledge: the daemon disconnects it, and
    the revocation completes. The call its agent sends next, read when it thaws, whatever the shim
    reads first, does not run under the old lease."""
    effects = tmp_path / "fx"
    config = write_config(tmp_path / "policy.json", ALLOW_DELETE)
    with start(daemon, effects, config) as peer:
        for i in (1, 2, 3):
            assert ok(peer.ask(call(i, "delete_user", {"id": i})))
        assert len(lease_rows(daemon)) >= 1
        os.kill(peer.proc.pid, signal.SIGSTOP)
        try:
            write_config(config, PAUSE_DELETE)
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: revocations(daemon), what="the revocation to complete")
            peer.send(call(10, "delete_user", {"id": 10}))
        finally:
            os.kill(peer.proc.pid, signal.SIGCONT)
        answer, _ = peer.response(10)
        peer.close()
    assert not ok(answer), answer
    assert [e["id"] for e in effects_of(effects)] == [1, 2, 3]
    (row,) = revocations(daemon)
    assert "1 disconnected" in row["detail"]


def test_bursts_with_quiet_spells_between_each_get_their_audit_rows(daemon: Daemon, tmp_path: Path) -> None:
    """The daemon reads a busy audit channel on a timer and waits for a byte again only after a
    read that found nothing: calls in bursts, with quiet spells longer than its read delay
    between them, each still get their audit row (a channel left unwatched after a quiet read
    would lose the later bursts' rows)."""
    effects = tmp_path / "fx"
    config = write_config(tmp_path / "policy.json", ALLOW_DELETE)
    with start(daemon, effects, config) as peer:
        msg_id = 0
        for _ in range(4):
            for _ in range(25):
                msg_id += 1
                assert ok(peer.ask(call(msg_id, "delete_user", {"id": msg_id})))
            threading.Event().wait(0.15)  # quiet: the daemon's next read finds nothing
        peer.close()
    ran = sorted(e["id"] for e in effects_of(effects))
    assert ran == list(range(1, 101))

    def audited() -> list[int]:
        ids: list[int] = []
        for row in daemon.audit(5000):
            if row["event"] == "decision" and row["tool"] == "delete_user":
                ids += [int(n) for n in re.findall(r'"id":(\d+)', row["detail"] or "")]
        return sorted(ids)

    wait_until(lambda: audited() == ran, what="an audit row for every call")
    assert len(lease_rows(daemon)) >= 90


def test_a_leased_call_on_a_last_line_without_a_newline_reaches_the_server(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A script's last line often has no newline: a leased call there is forwarded (and audited)
    before the server's stdin is closed, as a judged one is. (What the SDK server does with a call
    that comes with the end of its input is its own business; a byte tap shows it arrived.)"""
    record = tmp_path / "tap"
    record.mkdir()
    tap = [sys.executable, str(FIXTURES / "tap.py"), "--record", str(record), "--"]
    peer = Peer(shim_command([*tap, *fixture_command(tmp_path / "fx")]), daemon.env)
    with peer:
        peer.ask(initialize(0))
        peer.send(notification("notifications/initialized"))
        for i in range(1, 6):  # the lease is in place after the first calls
            assert ok(peer.ask(call(i, "read_note", {"name": f"note{i}"})))
        assert peer.proc.stdin is not None
        peer.proc.stdin.write(jline(call(77, "read_note", {"name": "the-last-one"})))  # no newline
        peer.proc.stdin.flush()
        peer.close()
    assert b"the-last-one" in (record / "from_client.bin").read_bytes()
    wait_until(lambda: len(lease_rows(daemon)) >= 5, what="the leased calls' audit rows")
    assert any("the-last-one" in str(row.get("detail")) for row in lease_rows(daemon))
