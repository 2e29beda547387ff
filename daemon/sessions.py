"""Sessions: one per shim, i.e. one per MCP server per chat.

A session has an id (shown in the console) and a secret token that only its shim knows: after a
daemon restart or a dropped connection, the shim presents the token to take its session, and the
actions pending in it, back. Nobody else can ask about or confirm in that session.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from daemon import protocol as p
from daemon.store import Store


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(slots=True)
class Session:
    """What the daemon knows of one shim."""

    session_id: str
    server: str | None
    config_path: str | None
    target: list[str]
    cwd: str
    pid: int
    client: str = ""
    #: The MCP client's own name (``clientInfo.name``), as it reported it; "" until it does.
    client_name: str = ""
    created: float = field(default_factory=time.time)
    connected: bool = True
    closed_at: float | None = None
    allowed: int = 0
    paused: int = 0
    denied: int = 0
    #: Approval prompts refused because the session asked too often (shown as a flood).
    flood_refused: int = 0
    prompts: deque[float] = field(default_factory=deque)
    #: Annotations of the tools the server listed, by exact name (a tool never listed has none).
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Its shim takes leases (it said so in its hello).
    leases: bool = False

    @property
    def counts(self) -> list[int]:
        """The console's counters, as stored: allowed, paused, denied, flood refusals."""
        return [self.allowed, self.paused, self.denied, self.flood_refused]

    def view(self) -> dict[str, Any]:
        """Plain values for a console."""
        return {
            "session_id": self.session_id,
            "server": self.server,
            "client": self.client,
            "target": self.target,
            "cwd": self.cwd,
            "pid": self.pid,
            "connected": self.connected,
            "created": self.created,
            "allowed": self.allowed,
            "paused": self.paused,
            "denied": self.denied,
            "flood_refused": self.flood_refused,
        }

    def prompt_allowed(self, per_minute: int, now: float) -> bool:
        """Count a new approval prompt; False if the session is over its per-minute budget."""
        while self.prompts and self.prompts[0] < now - 60:
            self.prompts.popleft()
        if len(self.prompts) >= per_minute:
            return False
        self.prompts.append(now)
        return True


def _process_runs(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process of ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the kill(0) answer stands


class Sessions:
    """Every session the daemon has served since it started (and those it resumed)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._by_id: dict[str, Session] = {}
        #: Counters as last stored, per session (what :meth:`save_counts` need not write again).
        self._saved: dict[str, list[int]] = {}

    def open(self, hello: p.Hello) -> tuple[Session, str]:
        """A session for this hello: the resumed one if its token is valid, else a new one."""
        if hello.resume:
            row = self._store.find_session(_token_hash(hello.resume))
            if row is not None:
                session = self._by_id.get(row["session_id"])
                if session is None:
                    session = Session(
                        session_id=row["session_id"],
                        server=row["server"],
                        config_path=row["config_path"],
                        target=list(hello.target or []),
                        cwd=row["cwd"],
                        pid=hello.pid,
                        client=row["client"] or "",
                        created=row["created"],
                    )
                    self._restore_counts(session, row["counts"])
                    self._by_id[session.session_id] = session
                session.connected = True
                session.closed_at = None
                session.pid = hello.pid
                self._store.set_session_pid(session.session_id, hello.pid)
                return session, hello.resume
        token = secrets.token_urlsafe(24)
        session = Session(
            session_id="S-" + secrets.token_hex(4).upper(),
            server=hello.server_name,
            config_path=hello.config_path,
            target=list(hello.target or []),
            cwd=hello.cwd,
            pid=hello.pid,
        )
        self._store.insert_session(
            session.session_id,
            _token_hash(token),
            session.server,
            session.config_path,
            session.target,
            session.cwd,
            session.pid,
        )
        self._by_id[session.session_id] = session
        return session, token

    def close(self, session: Session) -> None:
        """The shim's connection ended."""
        session.connected = False
        session.closed_at = time.time()
        self._store.close_session(session.session_id)
        self.save_counts()

    def save_counts(self) -> None:
        """Store the counters that changed since the last call (housekeeping, every second), so
        that after a restart a resumed session shows what it had let through, paused and denied."""
        changed = [(sid, s.counts) for sid, s in self._by_id.items() if self._saved.get(sid) != s.counts]
        if changed:
            self._store.save_session_counts(changed)
            self._saved.update(changed)

    def _restore_counts(self, session: Session, stored: str | None) -> None:
        try:
            values = json.loads(stored) if stored else None
        except ValueError:
            values = None
        if isinstance(values, list) and len(values) == 4 and all(type(v) is int for v in values):
            session.allowed, session.paused, session.denied, session.flood_refused = values
            self._saved[session.session_id] = values

    def set_client(self, session: Session, info: p.ClientInfo) -> None:
        """Record the MCP client's name and version."""
        session.client_name = info.name
        session.client = f"{info.name} {info.version}".strip()
        if info.protocol_version:
            session.client += f" (MCP {info.protocol_version})"
        self._store.set_session_client(session.session_id, session.client)

    def prune(self, older_than: float, keep: set[str]) -> list[str]:
        """Forget sessions closed before ``older_than`` (except ``keep``); returns their ids."""
        gone = [
            sid
            for sid, s in self._by_id.items()
            if not s.connected and s.closed_at is not None and s.closed_at < older_than and sid not in keep
        ]
        for sid in gone:
            del self._by_id[sid]
            self._saved.pop(sid, None)
        return gone

    def views(self) -> list[dict[str, Any]]:
        """Connected sessions first, newest first."""
        ordered = sorted(self._by_id.values(), key=lambda s: (not s.connected, -s.created))
        return [s.view() for s in ordered]

    def is_live(self, session_id: str) -> bool:
        """True while the session's shim is connected or its process still runs."""
        session = self._by_id.get(session_id)
        if session is not None and session.connected:
            return True
        pid = session.pid if session is not None else self._store.session_pid(session_id)
        return pid is not None and _process_runs(pid)

    def get(self, session_id: str) -> Session | None:
        """A session by id."""
        return self._by_id.get(session_id)

    def by_token(self, token: str) -> Session | None:
        """The live session a resume token belongs to (nothing changes)."""
        row = self._store.find_session(_token_hash(token))
        return self._by_id.get(row["session_id"]) if row is not None else None
