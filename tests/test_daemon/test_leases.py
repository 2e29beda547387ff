"""Leases are sound: whenever a shim would use one, the daemon's full decision is ``allow``.

The daemon's decision path is the real one (:class:`daemon.decisions.Decisions` with the built-in
self-protection over real directories, the bundled default policy, and a real store); the shim's
check is :class:`shim.leases.Lease` as the shim runs it, fed the grant the daemon makes.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from daemon import protocol as p
from daemon.codes import CodeBook
from daemon.decisions import Decisions
from daemon.leases import Leases
from daemon.pending import PendingActions
from daemon.policies import PolicyCache
from daemon.selfprotect import SelfProtection
from daemon.sessions import Session
from daemon.settings import DaemonSettings
from daemon.store import Store
from shim.leases import Lease, plain_arguments, plain_text

#: Pieces of argument strings: path features, their Unicode look-alikes and escapes, the names
#: of protected places, shell punctuation, and harmless words.
PIECES = [
    "/", "~", ".", "..", "$HOME", "${HOME}", "file:", "FILE:", "file://", "%2e", "%2F", "\\",
    "／", "．", "∕", "⁄", "～", "＄", "％", "ｆｉｌｅ：", "\u2024", "\ufe52", "\u200b", "\x00",
    " ", "'", '"', ";", "|", "=", ",", "(", "[", "\n", "\t",
    "state", ".local", "mcp-action-firewall", "firewall.db", "config", "home", "proc", "self", "root",
    "a", "notes", "é", "日本", "sql", "drop table x", "delete from t", "1.5", "v2", "x.y",
    "firewall_config.json", "FIREWALL_CONFIG.json",
]  # fmt: skip
KEYS = ["name", "path", "sql", "SQL", "Sql", "ｓｑｌ", "query", "q", "files", "s\u200bql", "k.ey", "a/b"]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    state = home / ".local" / "state" / "mcp-action-firewall"
    state.mkdir(parents=True)
    (home / "notes").mkdir()
    (home / "notes" / "to-state").symlink_to(state)
    settings = DaemonSettings(state_dir=str(state), socket_path=str(tmp_path / "run" / "s.sock"))
    store = Store(str(state / "firewall.db"))
    pending = PendingActions(store, CodeBook())
    guard = SelfProtection([(str(state), "state directory"), (str(tmp_path / "run"), "socket")], str(home))
    decisions = Decisions(settings, store, pending, PolicyCache(), guard)
    session = Session("S-TEST", None, None, ["server", str(home)], str(home / "notes"), os.getpid())
    leases = Leases(store, guard, enabled=True, ack_timeout=1.0)
    yield {"decisions": decisions, "session": session, "leases": leases, "home": home, "state": state}
    store.close()


def decide(world: dict[str, Any], tool: str, arguments: object) -> tuple[p.Verdict, p.LeaseGrant | None]:
    params = json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False).encode()
    msg = p.Decide(1, params)
    judged = world["decisions"].prepare(world["session"], msg)()
    verdict = world["decisions"].decide(world["session"], msg, judged)
    return verdict, world["leases"].offer(world["session"], judged, verdict)


#: The pieces without a path feature, so that many calls are covered too.
PLAIN = [piece for piece in PIECES if plain_text(piece)]


def random_string(rng: random.Random) -> str:
    pieces = PLAIN if rng.random() < 0.6 else PIECES
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))


def random_arguments(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth < 3 and kind < 0.25:
        return {rng.choice(KEYS + [random_string(rng)]): random_arguments(rng, depth + 1) for _ in range(3)}
    if depth < 3 and kind < 0.35:
        return [random_arguments(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind < 0.4:
        return rng.choice([1, 2.5, True, None])
    return random_string(rng)


@pytest.mark.parametrize("seed", range(4))
def test_a_call_the_lease_covers_is_one_the_daemon_allows(world: dict[str, Any], seed: int) -> None:
    """Random arguments, heavy with paths to the firewall's state (however spelt) and SQL: for
    every call the shim would forward under the lease, the daemon's own decision is ``allow``.
    The generator reaches both sides (some calls are refused by the daemon, some are covered)."""
    _, grant = decide(world, "read_note", {"name": "x"})
    assert grant is not None and grant.keys == ["sql"]
    lease = Lease(grant)
    rng = random.Random(seed)
    covered = refused = 0
    for _ in range(1500):
        arguments = {"name": random_arguments(rng), rng.choice(KEYS): random_arguments(rng)}
        params = json.dumps({"name": "read_note", "arguments": arguments}, ensure_ascii=False).encode()
        verdict, _ = decide(world, "read_note", arguments)
        refused += verdict.action != p.ALLOW
        if lease.covers(arguments, params):
            covered += 1
            assert verdict.action == p.ALLOW, (arguments, verdict)
    assert covered > 100 and refused > 100, (covered, refused)


@pytest.mark.parametrize(
    "text",
    [
        "a/b", "~", "~root", "$HOME", "${HOME}x", "..", ".ssh", "x .ssh", "file:x", "FILE:x", "a\\b",
        "%2e%2e", "ｆｉｌｅ：x", "／etc", "．ssh", "a∕b", "a⁄b", "～", "＄HOME", "x\u200by", "\x00",
        "cat 'notes/to-state/firewall.db'", "firewall_config.json", "x firewall_config.json",
        "ＦＩＲＥＷＡＬＬ_config.json",
    ],
)  # fmt: skip
def test_path_features_are_never_plain(text: str) -> None:
    """Each feature the self-protection rule (or a server that folds Unicode) reads as a path."""
    assert not plain_text(text)
    assert not plain_arguments({"k": text}, json.dumps({"arguments": {"k": text}}).encode())


@pytest.mark.parametrize("text", ["hello world", "v1.2", "note42", "naïve café", "日本語", "50 EUR", "a-b_c"])
def test_ordinary_text_is_plain(text: str) -> None:
    assert plain_text(text)


@pytest.mark.parametrize("key", ["sql", "SQL", "nested", "ｓｑｌ", "s\u200bql"])
def test_a_key_the_lease_names_is_never_covered(key: str) -> None:
    """A key a rule needs, in any case or any Unicode spelling, at any depth: asked about."""
    arguments = {"a": [{"b": {key: "select 1"}}]} if key == "nested" else {key: "drop table x"}
    if key == "nested":
        arguments = {"a": [{"b": {"SqL": "drop table x"}}]}
    params = json.dumps({"name": "t", "arguments": arguments}, ensure_ascii=False).encode()
    assert not plain_arguments(arguments, params, ["sql"])


def test_no_lease_where_arguments_decide_or_the_verdict_is_not_allow(world: dict[str, Any]) -> None:
    """Approve and deny verdicts get none; a call whose arguments a rule tested gets none either
    way; and a session whose server works inside a protected place gets none (every word of its
    calls counts as a path there)."""
    verdict, grant = decide(world, "delete_user", {"id": 1})
    assert verdict.action == p.APPROVE and grant is None
    verdict, grant = decide(world, "read_note", {"name": f"{world['state']}/firewall.db"})
    assert verdict.action == p.DENY and grant is None
    world["session"].cwd = str(world["state"])
    world["leases"]._cwd_ok.clear()
    verdict, grant = decide(world, "read_note", {"name": "x"})  # there "x" names a protected file
    assert verdict.action == p.DENY and grant is None
    verdict, grant = decide(world, "read_note", {"count": 1})  # allowed, but "x" next time is not
    assert verdict.action == p.ALLOW and grant is None


def test_a_veto_keeps_a_tool_unleased(world: dict[str, Any]) -> None:
    """What a quarantine or pin check adds to ``Leases.vetoes`` stops the offer."""
    world["leases"].vetoes.append(lambda session, tool: "quarantined" if tool == "read_note" else None)
    assert decide(world, "read_note", {"name": "x"})[1] is None
    assert decide(world, "read_other", {"name": "x"})[1] is not None


class FakePeer:
    """Stands in for a connection: records what is pushed."""

    def __init__(self) -> None:
        self.pushed: list[p.Message] = []
        self.aborted = False

    def push(self, message: p.Message) -> None:
        self.pushed.append(message)

    def abort(self) -> None:
        self.aborted = True


def test_revocation_raises_the_epoch_pushes_and_completes_on_acknowledgement(world: dict[str, Any]) -> None:
    """Every shim is told at once; the audit row that marks completion comes only once each has
    acknowledged (or been disconnected); a lease is offered again under the new epoch."""
    leases: Leases = world["leases"]
    a, b = FakePeer(), FakePeer()
    first = decide(world, "read_note", {"name": "x"})[1]
    assert first is not None and decide(world, "read_note", {"name": "y"})[1] is None  # sent once
    epoch = leases.revoke("policy reloaded", [a, b])  # type: ignore[list-item]
    assert a.pushed == b.pushed == [p.LeasesRevoked(epoch)] and epoch > first.epoch
    again = decide(world, "read_note", {"name": "x"})[1]
    assert again is not None and again.epoch == epoch
    store: Store = world["decisions"].store
    store.ingest()

    def completed() -> list[Any]:
        store.ingest()
        return [r for r in store.query_audit(50, None, None, None) if r["event"] == "leases_revoked"]

    leases.acknowledged(a, epoch)  # type: ignore[arg-type]
    assert completed() == [] and leases.revoking
    leases._open[0].deadline = 0  # b never answers: past its deadline it is disconnected
    leases.enforce()
    assert b.aborted and not a.aborted and not leases.revoking
    (row,) = completed()
    assert "1 shim(s) acknowledged, 1 disconnected" in row["detail"]


def test_verdicts_changed_reaches_every_shim_and_a_pin_veto_holds(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """What the grant and pin code calls: ``Firewalld.verdicts_changed`` pushes the revocation to
    every connected shim; with the pin's veto in place, the tool is not leased again."""
    import anyio

    from daemon.server import Firewalld

    async def scenario() -> None:
        decisions: Decisions = world["decisions"]
        app = Firewalld(decisions.settings, decisions.store, decisions.pending)
        a, b = FakePeer(), FakePeer()
        app._shim_of.update({"S-A": a, "S-B": b})  # type: ignore[dict-item]
        app.decisions, app.leases = decisions, world["leases"]
        assert decide(world, "read_note", {"name": "x"})[1] is not None
        world["leases"].vetoes.append(lambda session, tool: "quarantined" if tool == "read_note" else None)
        app.verdicts_changed("tool read_note quarantined")
        epoch = world["leases"].epoch
        assert a.pushed == b.pushed == [p.LeasesRevoked(epoch)]
        assert decide(world, "read_note", {"name": "x"})[1] is None
        app._events_in.close()
        app._events_out.close()

    anyio.run(scenario)


@pytest.mark.parametrize("channel", ["audit", "main"])
def test_records_whose_transaction_failed_are_neither_acknowledged_nor_skipped_when_resent(
    world: dict[str, Any], channel: str
) -> None:
    """A batch of leased calls' records whose transaction fails (a full disk) is not acknowledged,
    and when the shim sends it again after reconnecting it is written, not taken as already
    recorded: those calls ran, and each must have its audit row."""
    import anyio

    from daemon.server import Firewalld

    async def scenario() -> None:
        decisions: Decisions = world["decisions"]
        store: Store = decisions.store
        app = Firewalld(decisions.settings, store, decisions.pending)
        app.decisions, app.leases = decisions, world["leases"]
        session: Session = world["session"]
        calls: list[object] = [[1, "read_note", "r", b"{}"], [2, "read_note", "r", b"{}"]]
        batch: list[p.Message] = [p.LeaseAudit(7, calls)]

        def send(batch: list[p.Message]) -> None:
            if channel == "audit":
                app._leased(session, batch)
            else:
                app._shim_batch(session, batch)

        real = store._spool_rows

        def full_disk(rows: Any) -> None:
            raise OSError(28, "No space left on device")

        store._spool_rows = full_disk  # type: ignore[method-assign]
        with pytest.raises(OSError):
            send(batch)
        assert app._audit_acks == {}  # nothing the shim may forget
        store._spool_rows = real  # type: ignore[method-assign]
        send(batch)  # the shim's resend after its reconnect
        assert app._audit_acks == {session.session_id: 7}
        store.ingest()
        rows = store.db.execute("select action_id from audit where action_id like 'lease:%'").fetchall()
        assert sorted(r[0] for r in rows) == ["lease:1", "lease:2"]
        app._events_in.close()
        app._events_out.close()

    anyio.run(scenario)
