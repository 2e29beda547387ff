"""Grants: a human's "yes" that outlasts one call, made from a paused action in the console.

Two kinds live here (the third, "always", is a rule written into the policy file by
:mod:`daemon.always`; "once" is a plain approval):

- ``chat``: this tool, any arguments, in this chat (session) only, until the chat ends.
- ``args``: this tool, in every chat of the same server section (``--name`` and policy file),
  when the arguments match what the human saw, until a deadline (N minutes).

A grant only ever turns an ``approve`` verdict into ``allow``: the built-in self-protection and
every ``deny`` are decided before grants are looked at (see :meth:`daemon.decisions.Decisions.decide`).

Argument matches are deliberately strict, because a grant lets calls *through*: a value passes
only if it is exactly what was granted (``equals``: the same JSON value, type included) or a
path that, with ``.``/``..`` and symlinks resolved, lies inside the granted directory
(``under``). Each is tested on top of the policy's own condition (:mod:`daemon.conditions`, in
:func:`~daemon.normalize.normalize` form), so a grant never matches what the policy's reading
would not, and a spelling the policy folds together (``PROD``/``prod``, a zero-width space) is
not a way in either. Grants are kept in their own table of the daemon's database and survive a
restart; each one made, revoked or ended is audited, and each call one lets through is audited
as an ``allow`` decision that names it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon import config
from daemon.conditions import Args, Condition
from daemon.normalize import normalize
from daemon.store import Store

log = logging.getLogger("firewalld")

__all__ = ["SCOPES", "Grant", "GrantError", "Grants", "Match", "parse_matches"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,           -- chat | args
    tool TEXT NOT NULL,            -- the exact tool name
    server TEXT,                   -- the --name of the chats it applies to
    config_path TEXT,              -- and their policy file
    session_id TEXT,               -- chat grants: the one chat
    matches TEXT NOT NULL,         -- JSON: [{"key": k, "equals": v} | {"key": k, "under": dir}]
    created REAL NOT NULL,
    expires REAL,                  -- args grants: when it ends
    action_id TEXT NOT NULL        -- the paused action it was made from
);
"""

#: The scopes this module stores.
SCOPES = ("chat", "args")
#: Most grants alive at once (every one is tested against each call of its tool).
MAX_GRANTS = 1000
#: Most argument matches in one grant.
MAX_MATCHES = 16
#: Longest timed grant.
MAX_MINUTES = 24 * 60
#: A chat grant ends this long after its chat closed (a shim that reconnects within it resumes).
CHAT_GRACE = 3600.0


class GrantError(Exception):
    """Raised when a grant cannot be made as asked (the message says why, for the console)."""


@dataclass(frozen=True, slots=True)
class Match:
    """One argument test of an ``args`` grant: top-level argument ``key`` ``equals`` a value, or
    is a path ``under`` a directory."""

    key: str
    test: str  # equals | under
    value: Any
    #: The policy's condition on the same value (normalized reading), tested as well.
    condition: Condition = field(compare=False)

    @classmethod
    def make(cls, key: str, test: str, value: Any) -> Match:
        if test == "equals":
            spec: dict[str, Any] = {"key": key, "equals": value}
        elif test == "under":
            if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
                raise GrantError(f"'under' needs an absolute directory (got {value!r})")
            value = os.path.normpath(value)
            prefix = re.escape(normalize(value).rstrip("/"))
            spec = {"key": key, "regex": f"^{prefix}(/|$)"}
        else:
            raise GrantError(f"unknown argument test {test!r} (use equals or under)")
        try:
            compiled = Condition.compile(config.Condition.model_validate(spec), f"grant {key!r}")
        except ValueError as exc:
            raise GrantError(f"argument {key!r}: {exc}") from None
        return cls(key, test, value, compiled)

    def passes(self, arguments: Mapping[str, Any], args: Args) -> bool:
        """Whether the call's argument passes: the exact test and the policy's reading both."""
        if self.key not in arguments:
            return False
        value = arguments[self.key]
        if self.test == "equals":
            exact = _same_json(value, self.value)
        else:
            exact = isinstance(value, str) and _inside(value, self.value)
        return exact and args.holds(self.condition)

    def wire(self) -> dict[str, Any]:
        return {"key": self.key, self.test: self.value}

    def describe(self) -> str:
        if self.test == "under":
            return f"{self.key} under {self.value}"
        return f"{self.key} = {json.dumps(self.value, ensure_ascii=False)}"


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, types included (``True`` is not ``1``, ``1`` is not ``"1"``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` is absolute and lies in ``directory``, both as written (``..`` resolved)
    and with symlinks resolved: a link inside that points out is outside."""
    if not path.startswith("/") or "\0" in path or len(path) > 4096:
        return False
    for candidate, base in ((os.path.normpath(path), directory), _real(path, directory)):
        if candidate != base and not candidate.startswith(base.rstrip("/") + "/"):
            return False
    return True


def _real(path: str, directory: str) -> tuple[str, str]:
    try:
        return os.path.realpath(path), os.path.realpath(directory)
    except (OSError, ValueError):
        return "", directory  # cannot be resolved: not inside


def parse_matches(raw: Iterable[Mapping[str, Any]]) -> tuple[Match, ...]:
    """Matches from their wire form (``{"key": k, "equals": v}`` or ``{"key": k, "under": d}``)."""
    matches = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) or not item["key"]:
            raise GrantError("each argument match needs a 'key' (a top-level argument name)")
        tests = [t for t in ("equals", "under") if t in item]
        if len(tests) != 1 or len(item) != 2:
            raise GrantError(f"argument {item['key']!r}: give exactly one of 'equals' or 'under'")
        matches.append(Match.make(item["key"], tests[0], item[tests[0]]))
    if len(matches) > MAX_MATCHES:
        raise GrantError(f"at most {MAX_MATCHES} argument matches in one grant")
    if len({m.key for m in matches}) != len(matches):
        raise GrantError("each argument may be matched once")
    return tuple(matches)


@dataclass(slots=True)
class Grant:
    """One grant as the daemon holds it."""

    grant_id: str
    scope: str
    tool: str
    server: str | None
    config_path: str | None
    session_id: str | None
    matches: tuple[Match, ...]
    created: float
    expires: float | None
    action_id: str
    #: Calls it let through since the daemon started.
    uses: int = 0

    def applies(self, session_id: str, server: str | None, config_path: str | None, now: float) -> bool:
        """Whether the grant covers a call of its tool in this chat (arguments aside)."""
        if self.expires is not None and now >= self.expires:
            return False
        if self.scope == "chat":
            return session_id == self.session_id
        return server == self.server and config_path == self.config_path

    def covers(self, arguments: object) -> bool:
        """Whether the call's arguments pass every match (a chat grant has none)."""
        if not self.matches:
            return True
        if not isinstance(arguments, dict):
            return False
        args = Args(arguments)
        return all(m.passes(arguments, args) for m in self.matches)

    def describe(self) -> str:
        """One line for the console, the log and ``firewalld explain``."""
        if self.scope == "chat":
            return f"{self.grant_id}: {self.tool} in chat {self.session_id}"
        where = f"server {self.server!r}" if self.server else "unnamed servers"
        args = ", ".join(m.describe() for m in self.matches) or "any arguments"
        until = time.strftime("%H:%M:%S", time.localtime(self.expires)) if self.expires else "revoked"
        return f"{self.grant_id}: {self.tool} with {args}, {where}, until {until}"

    def view(self) -> dict[str, Any]:
        """Plain values for a console."""
        return {
            "grant_id": self.grant_id,
            "scope": self.scope,
            "tool": self.tool,
            "server": self.server,
            "config_path": self.config_path,
            "session_id": self.session_id,
            "matches": [m.wire() for m in self.matches],
            "created": self.created,
            "expires": self.expires,
            "action_id": self.action_id,
            "uses": self.uses,
            "description": self.describe(),
        }


class Grants:
    """The live grants, in memory (by tool name) and in the ``grants`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.db
        self._db.executescript(SCHEMA)
        self._by_tool: dict[str, list[Grant]] = {}
        for row in self._db.execute(
            "SELECT grant_id, scope, tool, server, config_path, session_id, matches, created, expires,"
            " action_id FROM grants"
        ).fetchall():
            try:
                matches = parse_matches(json.loads(row[6]))
            except (GrantError, ValueError, TypeError) as exc:  # a hand-edited row: drop, never widen
                log.error("dropped grant %s: %s", row[0], exc)
                self._db.execute("DELETE FROM grants WHERE grant_id = ?", (row[0],))
                continue
            self._add(Grant(row[0], row[1], row[2], row[3], row[4], row[5], matches, *row[7:10]))

    def _add(self, grant: Grant) -> None:
        self._by_tool.setdefault(grant.tool, []).append(grant)

    def all(self) -> list[Grant]:
        """Every grant, newest first."""
        return sorted((g for gs in self._by_tool.values() for g in gs), key=lambda g: -g.created)

    def find(
        self, session_id: str, server: str | None, config_path: str | None, tool: str, arguments: object
    ) -> Grant | None:
        """The oldest grant that lets this call through, or None (counted as a use)."""
        candidates = self._by_tool.get(tool)
        if not candidates:
            return None
        now = time.time()
        for grant in candidates:
            if grant.applies(session_id, server, config_path, now) and grant.covers(arguments):
                grant.uses += 1
                return grant
        return None

    def make(
        self,
        *,
        scope: str,
        tool: str,
        server: str | None,
        config_path: str | None,
        session_id: str,
        matches: tuple[Match, ...],
        minutes: float,
        action_id: str,
    ) -> Grant:
        """Store and audit a new grant.

        Raises:
            GrantError: a scope this module does not store, a bad duration, or too many grants.
        """
        if scope not in SCOPES:
            raise GrantError(f"unknown scope {scope!r} (chat, args; 'always' writes the policy file)")
        if sum(len(gs) for gs in self._by_tool.values()) >= MAX_GRANTS:
            raise GrantError(f"there are already {MAX_GRANTS} grants: revoke some first")
        now = time.time()
        expires: float | None = None
        if scope == "args":
            if not 0 < minutes <= MAX_MINUTES:
                raise GrantError(f"a timed grant lasts 1 to {MAX_MINUTES} minutes (got {minutes:g})")
            expires = now + minutes * 60
        grant = Grant(
            grant_id="G-" + secrets.token_hex(4).upper(),
            scope=scope,
            tool=tool,
            server=server,
            config_path=config_path,
            session_id=session_id if scope == "chat" else None,
            matches=matches if scope == "args" else (),
            created=now,
            expires=expires,
            action_id=action_id,
        )
        self._db.execute(
            "INSERT INTO grants (grant_id, scope, tool, server, config_path, session_id, matches, created,"
            " expires, action_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                grant.grant_id,
                grant.scope,
                grant.tool,
                grant.server,
                grant.config_path,
                grant.session_id,
                json.dumps([m.wire() for m in grant.matches]),
                grant.created,
                grant.expires,
                grant.action_id,
            ),
        )
        self._add(grant)
        self._audit("grant_made", grant, grant.describe())
        return grant

    def revoke(self, grant_id: str, why: str = "revoked in the console") -> Grant | None:
        """End a grant now; returns it, or None if there is no such grant."""
        for grants in self._by_tool.values():
            for grant in grants:
                if grant.grant_id == grant_id:
                    self._end(grant, "grant_revoked", why)
                    return grant
        return None

    def expire(self, now: float | None = None) -> list[Grant]:
        """End the timed grants past their deadline, and the chat grants of chats closed for
        :data:`CHAT_GRACE` (or gone from the database); returns them."""
        now = time.time() if now is None else now
        gone = {
            sid
            for (sid,) in self._db.execute(
                "SELECT g.session_id FROM grants g LEFT JOIN sessions s ON s.session_id = g.session_id"
                " WHERE g.scope = 'chat' AND (s.session_id IS NULL OR s.closed < ?)",
                (now - CHAT_GRACE,),
            )
        }
        ended = [
            g
            for gs in self._by_tool.values()
            for g in gs
            if (g.expires is not None and now >= g.expires) or (g.scope == "chat" and g.session_id in gone)
        ]
        for grant in ended:
            self._end(grant, "grant_expired", "its time ran out" if grant.expires else "its chat ended")
        return ended

    def _end(self, grant: Grant, event: str, why: str) -> None:
        self._db.execute("DELETE FROM grants WHERE grant_id = ?", (grant.grant_id,))
        grants = self._by_tool.get(grant.tool, [])
        if grant in grants:
            grants.remove(grant)
        if not grants:
            self._by_tool.pop(grant.tool, None)
        self._audit(event, grant, f"{grant.describe()}: {why} (used {grant.uses} time(s))")

    def _audit(self, event: str, grant: Grant, detail: str) -> None:
        self._store.audit(
            event,
            session_id=grant.session_id,
            server=grant.server,
            tool=grant.tool,
            action_id=grant.action_id,
            rule=grant.grant_id,
            detail=detail,
        )
        log.info("%s %s", event.replace("_", " "), detail)


def read_grants(db_path: str) -> list[Grant]:
    """The grants in a daemon's database, read-only (for ``firewalld explain``); none if it has
    no database or no grants table yet."""
    import contextlib
    import sqlite3
    import urllib.parse

    uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2)) as db:
            rows = db.execute(
                "SELECT grant_id, scope, tool, server, config_path, session_id, matches, created, expires,"
                " action_id FROM grants ORDER BY created"
            ).fetchall()
    except sqlite3.Error:
        return []
    grants = []
    for row in rows:
        try:
            matches = parse_matches(json.loads(row[6]))
        except (GrantError, ValueError, TypeError):
            continue
        grants.append(Grant(row[0], row[1], row[2], row[3], row[4], row[5], matches, *row[7:10]))
    return grants
