"""The audit log's bounds: by age and by row count, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from daemon.store import Store


def stamps(store: Store) -> list[float]:
    """The timestamps left, oldest first."""
    return [row[0] for row in store.db.execute("SELECT ts FROM audit ORDER BY id")]


def test_prune_by_age_and_by_rows(tmp_path: Path) -> None:
    """Rows older than the cut are deleted, then all but the newest N; an all-old log empties."""
    store = Store(str(tmp_path / "f.db"))
    for i in range(3000):
        store.db.execute("INSERT INTO audit (ts, event) VALUES (?, 'decision')", (1000.0 + i,))
    assert store.prune_audit(1500.0, 10_000) == 500
    assert stamps(store)[0] == 1500.0
    assert store.prune_audit(0.0, 1000) == 1500
    assert stamps(store) == [1000.0 + i for i in range(2000, 3000)]
    assert store.prune_audit(1e12, 1000) == 1000
    assert stamps(store) == []
    store.close()
