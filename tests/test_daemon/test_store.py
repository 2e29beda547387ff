"""The store on a real SQLite file: the audit log's bounds, and its spool through batches and crashes."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
from pathlib import Path

import pytest

from daemon import audit_log
from daemon.store import Store, StoreBusy


def stamps(store: Store) -> list[float]:
    """The timestamps left, oldest first."""
    return [row[0] for row in store.db.execute("SELECT ts FROM audit ORDER BY id")]


def test_prune_by_age_and_by_rows(tmp_path: Path) -> None:
    """Rows older than the cut are deleted, then all but the newest N; an all-old log empties."""
    store = Store(str(tmp_path / "f.db"))
    for i in range(3000):
        store.db.execute(
            "INSERT INTO audit (ts, event, decision) VALUES (?, 'decision', 'allow')", (1000.0 + i,)
        )
    assert store.prune_audit(1500.0, 10_000) == 500
    assert stamps(store)[0] == 1500.0
    assert store.prune_audit(0.0, 1000) == 1500
    assert stamps(store) == [1000.0 + i for i in range(2000, 3000)]
    assert store.prune_audit(1e12, 1000) == 1000
    assert stamps(store) == []
    store.close()


def test_prune_keeps_security_rows_apart_from_allowed_calls(tmp_path: Path) -> None:
    """Allowed calls past their limit are pruned without touching older pauses, confirms, denials
    and outcomes, which are counted against a limit of their own."""
    store = Store(str(tmp_path / "f.db"))
    security = ["paused", "confirm_ok", "outcome", "denied", "confirm_failed", "expired", "withdrawn"]
    for event in security:
        store.db.execute("INSERT INTO audit (ts, event) VALUES (1.0, ?)", (event,))
    store.db.execute("INSERT INTO audit (ts, event, decision) VALUES (1.0, 'decision', 'deny')")
    for i in range(50):
        store.db.execute(
            "INSERT INTO audit (ts, event, decision) VALUES (?, 'decision', 'allow')", (2.0 + i,)
        )
    assert store.prune_audit(0.0, 10, 100) == 40
    events = [row[0] for row in store.db.execute("SELECT event FROM audit ORDER BY id")]
    assert events == [*security, "decision"] + ["decision"] * 10
    assert store.prune_audit(0.0, 10, 3) == 5  # the security rows' own limit keeps their newest
    events = [row[0] for row in store.db.execute("SELECT event FROM audit ORDER BY id")]
    assert events == ["expired", "withdrawn", "decision"] + ["decision"] * 10
    store.close()


def spool_of(tmp_path: Path) -> bytes:
    return (tmp_path / "audit.spool").read_bytes()


def test_audit_rows_are_spooled_before_the_batch_commits_and_ingested_in_order(tmp_path: Path) -> None:
    """A batch's rows reach the spool in one write when it ends; reading the log ingests them."""
    store = Store(str(tmp_path / "f.db"))
    store.audit("session_open", session_id="s1")
    with store.transaction():
        store.audit("decision", session_id="s1", tool="read", decision="allow")
        store.audit("decision", session_id="s1", tool="write", decision="deny")
        assert spool_of(tmp_path).count(b"\n") == 1  # not before the batch ends
    assert spool_of(tmp_path).count(b"\n") == 3
    assert store.db.execute("SELECT COUNT(*) FROM audit").fetchone() == (0,)
    rows = store.query_audit(10, None, None, None)
    assert [(r["event"], r["tool"]) for r in rows] == [
        ("decision", "write"),
        ("decision", "read"),
        ("session_open", None),
    ]
    assert [r["id"] for r in rows] == [3, 2, 1]
    assert spool_of(tmp_path) == b""
    store.close()


def test_a_failed_batch_spools_nothing_and_rolls_back(tmp_path: Path) -> None:
    """An error inside a batch: its audit rows are dropped with its writes."""
    store = Store(str(tmp_path / "f.db"))
    try:
        with store.transaction():
            store.audit("paused", action_id="A-1")
            store.close_session("nobody")  # a write: the SQLite transaction has begun
            raise ValueError("boom")
    except ValueError:
        pass
    assert spool_of(tmp_path) == b""
    assert store.query_audit(10, None, None, None) == []
    store.close()


def test_a_spool_that_cannot_be_written_fails_the_batch(tmp_path: Path) -> None:
    """If the rows cannot be spooled (a full disk), the batch raises and its writes roll back."""
    store = Store(str(tmp_path / "f.db"))
    store.insert_session("s1", b"h", None, None, None, "/", 1)
    read_only = os.open(tmp_path / "audit.spool", os.O_RDONLY)
    writable, store._spool = store._spool, read_only
    try:
        with store.transaction():
            store.set_session_client("s1", "agent")
            store.audit("session", session_id="s1")
        raise AssertionError("the batch did not fail")
    except OSError:
        pass
    finally:
        store._spool = writable
        os.close(read_only)
    (client,) = store.db.execute("SELECT client FROM sessions").fetchone()
    assert client is None
    store.close()


def test_rows_left_in_the_spool_are_recovered_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A daemon that died before ingesting: the next one moves the rows in, skips a cut-off line,
    and a row already ingested (a crash between the commit and the truncation) stays one row."""
    store = Store(str(tmp_path / "f.db"))
    store.audit("decision", tool="one")
    store.ingest()
    store.audit("decision", tool="two")
    store.audit("decision", tool="three")
    left = spool_of(tmp_path)
    store.db.close()  # "killed": no ingest, no close
    os.close(store._spool)
    first_line = b'[1,1.0,"decision",null,null,"one",null,null,null,null]\n'
    (tmp_path / "audit.spool").write_bytes(first_line + left + b'[9,1.0,"decis')

    again = Store(str(tmp_path / "f.db"))
    assert [r["tool"] for r in again.query_audit(10, None, None, None)] == ["three", "two", "one"]
    assert "1 unreadable line" in caplog.text
    assert (tmp_path / "audit.spool.bad").read_bytes() == b'[9,1.0,"decis\n'  # kept, not lost
    again.audit("decision", tool="four")  # ids go on after the recovered ones
    assert again.query_audit(1, None, None, None)[0]["id"] == 4
    again.close()


def test_one_daemon_per_state_directory(tmp_path: Path) -> None:
    """Two daemons on different sockets but one HOME would hand out the same audit ids and empty
    each other's spool: the second is refused."""
    first = Store(str(tmp_path / "f.db"))
    with pytest.raises(StoreBusy, match="another firewalld is using"):
        Store(str(tmp_path / "f.db"))
    first.close()
    Store(str(tmp_path / "f.db")).close()  # free again once the first has gone


def test_a_short_write_then_a_crash_keeps_the_forwarded_row(tmp_path: Path) -> None:
    """A full disk cuts a batch's write short (a real short write, with RLIMIT_FSIZE): the batch
    fails, and a later batch that succeeds is not glued to the cut line, so after a crash the
    row of the call that ran is in the log and the rows of the refused batch are not."""
    store = Store(str(tmp_path / "f.db"))
    store.audit("decision", tool="zero")
    store.ingest()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, limit[1]))  # the first line whole, the second cut
    try:
        with pytest.raises(OSError, match="short write"), store.transaction():
            store.audit("decision", tool="refused-1")
            store.audit("decision", tool="refused-2")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    with store.transaction():
        store.audit("decision", tool="forwarded")
    store.db.close()  # killed: no ingest
    os.close(store._spool)
    tools = [r["tool"] for r in Store(str(tmp_path / "f.db")).query_audit(10, None, None, None)]
    assert tools == ["forwarded", "zero"]


def test_a_row_sqlite_cannot_take_is_stored_printable(tmp_path: Path) -> None:
    """A lone surrogate in a tool name (valid JSON: "\\ud800") cannot be bound as UTF-8: the row
    goes in with it replaced, the rows around it as they were, and a restart finds the same."""
    store = Store(str(tmp_path / "f.db"))
    with store.transaction():
        store.audit("decision", tool="before")
        store.audit("decision", tool="\ud800x", decision="deny")
        store.audit("decision", tool="after")
    store.db.close()  # killed before the ingester ran: recovery meets the row first
    os.close(store._spool)
    again = Store(str(tmp_path / "f.db"))
    assert [r["tool"] for r in again.query_audit(10, None, None, None)] == ["after", "\ufffdx", "before"]
    again.audit("decision", tool="\udfff")
    again.ingest()
    assert again.query_audit(1, None, None, None)[0]["tool"] == "\ufffd"
    again.close()


def test_a_database_that_takes_nothing_makes_batches_fail_not_memory_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While SQLite refuses every insert the rows wait in the spool, up to a bound; past it a
    batch fails (its call is refused) instead of memory growing."""
    store = Store(str(tmp_path / "f.db"))
    monkeypatch.setattr(audit_log, "MAX_SPOOLED", 3)

    def broken(rows: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_insert_audit", broken)
    for i in range(3):
        store.audit("decision", tool=f"t{i}")
        with pytest.raises(sqlite3.OperationalError):
            store.ingest()
    with pytest.raises(OSError, match="waiting for the database"), store.transaction():
        store.audit("decision", tool="t3")
    monkeypatch.undo()
    assert [r["tool"] for r in store.query_audit(10, None, None, None)] == ["t2", "t1", "t0"]
    store.close()
