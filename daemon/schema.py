"""The daemon database's schema, and the migration of a database made by an older version."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,          -- decision | paused | confirm_ok | confirm_failed | denied | expired
                                  -- | locked | withdrawn | outcome | session_open | session_close | policy
    session_id TEXT,
    server TEXT,
    tool TEXT,
    action_id TEXT,
    decision TEXT,
    rule TEXT,
    detail TEXT
);
-- No index on ts: ids grow with time, so pruning by age walks ids (and an index would cost every
-- decision a second B-tree update).
DROP INDEX IF EXISTS audit_ts;
CREATE TABLE IF NOT EXISTS pending (
    action_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    server TEXT,
    tool TEXT NOT NULL,
    params BLOB NOT NULL,        -- the frozen tools/call params (canonical JSON)
    code_mac BLOB NOT NULL,      -- always empty: codes live in the daemon's memory only
    code_sealed BLOB NOT NULL,   -- (kept so that older databases open unchanged)
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    deadline REAL NOT NULL,
    attempts_left INTEGER NOT NULL,
    status TEXT NOT NULL,        -- pending | approved | denied | expired | locked | withdrawn
    closed_at REAL
    -- added by _migrate(): outcome TEXT (what became of an approved call: sent | ran | not_run |
    -- unknown) and code_length INTEGER
);
CREATE INDEX IF NOT EXISTS pending_session ON pending (session_id, status);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL,
    server TEXT,
    config_path TEXT,
    target TEXT,
    cwd TEXT,
    pid INTEGER,
    client TEXT,
    created REAL NOT NULL,
    closed REAL
);
"""


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database made by an older version up to this schema (idempotent)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(pending)")}
    if "outcome" not in columns:
        db.execute("ALTER TABLE pending ADD COLUMN outcome TEXT")
    if "code_length" not in columns:
        db.execute("ALTER TABLE pending ADD COLUMN code_length INTEGER NOT NULL DEFAULT 6")
    if "counts" not in {row[1] for row in db.execute("PRAGMA table_info(sessions)")}:
        # A session's console counters (allowed, paused, denied, flood refusals) as a JSON list.
        db.execute("ALTER TABLE sessions ADD COLUMN counts TEXT")
