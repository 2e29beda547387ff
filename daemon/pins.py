"""Tool-definition pinning: a server cannot change what a tool means behind the user's back.

The first listing of a server's tools is pinned (trust on first use, audited): per server
identity (the shim's ``--name``, else its target command line with relative paths made
absolute) and per tool name, the definition's canonical JSON (name, title, description,
inputSchema, outputSchema, annotations; sorted keys, compact) and its SHA-256. From then on a
listed definition that differs from its pin is *quarantined*: the shim drops it from the agent's
``tools/list`` and the daemon denies its calls, until a human accepts (re-pins) or rejects it in
the console. A tool a known server lists for the first time is quarantined the same way, or
pinned at once, as the policy's ``new_tools`` says. A renamed tool is a removed one (its pin
stays) and a new one.

States of a pin::

    pinned     the listed definition is the approved one
    changed    a definition other than the approved one is waiting for review (``seen``)
    new        a tool never approved is waiting for review
    rejected   the human rejected the definition in ``seen``; hidden and denied until the
               server lists the approved one again (pinned again), or another one (reviewed)

A change stays under review even if the server lists the approved definition again (another
chat's older server process, or a change undone): hidden and denied until the human decides.

The quarantined names per server live in memory (:attr:`Pins.blocked`), so the check on every
call is a dict and a set lookup, and nothing at all while no tool is quarantined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.sessions import Session
from daemon.store import Store
from daemon.tooldefs import Definition, canonical, server_identity, text_of

log = logging.getLogger("firewalld")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_pins (
    server TEXT NOT NULL,         -- the server identity (see server_identity)
    tool TEXT NOT NULL,
    state TEXT NOT NULL,          -- pinned | changed | new | rejected
    pinned_hash TEXT,             -- SHA-256 of the approved definition (NULL: never approved)
    pinned TEXT,                  -- the approved definition, canonical JSON
    seen_hash TEXT,               -- the definition under review, or rejected
    seen TEXT,
    review_id TEXT,               -- names the definition in seen (a new one gets a new id)
    updated REAL NOT NULL,
    PRIMARY KEY (server, tool)
);
"""

PINNED, CHANGED, NEW, REJECTED = "pinned", "changed", "new", "rejected"
#: States whose tool is hidden and denied.
QUARANTINED = frozenset({CHANGED, NEW, REJECTED})
#: The rule name in verdicts and the audit log.
RULE = "builtin.tool_pin"
#: Pins kept per server: past it, a new tool is hidden without being stored (a server that
#: invents names without end cannot grow the database without end).
MAX_TOOLS_PER_SERVER = 10_000
#: A definition longer than this (characters of JSON) is cut in listings (``*_cut`` is set).
LISTED_DEFINITION = 64 * 1024
#: Definitions remembered by the hash of their bytes (see Pins._known_definition).
_KNOWN = 50_000
#: Reviews listed with their definitions, at most (the rest are listed without them).
MAX_REVIEWS_LISTED = 200


@dataclass(slots=True)
class Pin:
    """One server's tool, as stored."""

    server: str
    tool: str
    state: str
    pinned_hash: str | None
    pinned: str | None
    seen_hash: str | None
    seen: str | None
    review_id: str | None
    updated: float

    def view(self, with_definitions: bool) -> dict[str, Any]:
        """Plain values for a console."""
        out: dict[str, Any] = {
            "server": self.server,
            "tool": self.tool,
            "state": self.state,
            "review_id": self.review_id or "",
            "updated": self.updated,
            "pinned_hash": self.pinned_hash or "",
            "seen_hash": self.seen_hash or "",
        }
        if with_definitions:
            for key, text in (("pinned", self.pinned), ("seen", self.seen)):
                cut = text is not None and len(text) > LISTED_DEFINITION
                out[key] = text[:LISTED_DEFINITION] if text is not None else None
                out[key + "_cut"] = cut
        return out


class PinError(Exception):
    """Raised by :meth:`Pins.review` for a review id that names nothing to review."""


class Pins:
    """Every server's pinned tool definitions, in the database and in memory."""

    def __init__(self, store: Store, on_change: Callable[[str, str], None]) -> None:
        """``on_change(server, reason)`` is called whenever a pin's state changes."""
        self._store = store
        self._on_change = on_change
        store.db.executescript(SCHEMA)
        self._rows: dict[str, dict[str, Pin]] = {}
        self._identity: dict[str, str] = {}  # session id -> server identity
        self._tofu: dict[str, str] = {}  # session id -> the server whose first listing it makes
        self._overflow: dict[str, set[str]] = {}  # tools past MAX_TOOLS_PER_SERVER, by server
        self._known: dict[bytes, Definition] = {}  # see _known_definition
        #: Quarantined tool names, by server identity (only servers that have some).
        self.blocked: dict[str, set[str]] = {}
        for row in store.db.execute(
            "SELECT server, tool, state, pinned_hash, pinned, seen_hash, seen, review_id, updated "
            "FROM tool_pins"
        ):
            pin = Pin(*row)
            self._rows.setdefault(pin.server, {})[pin.tool] = pin
        for server in self._rows:
            self._reblock(server)

    def identity(self, session: Session) -> str:
        """The session's server identity (see :func:`server_identity`)."""
        ident = self._identity.get(session.session_id)
        if ident is None:
            if len(self._identity) > 100_000:
                self._identity.clear()
            ident = server_identity(session.server, session.target, session.cwd)
            self._identity[session.session_id] = ident
        return ident

    def refusal(self, session: Session, tool: str) -> str | None:
        """Why a call of ``tool`` is denied because its definition is quarantined, or None."""
        if not self.blocked:
            return None
        blocked = self.blocked.get(self.identity(session))
        if not blocked or tool not in blocked:
            return None
        pin = self._rows.get(self.identity(session), {}).get(tool)
        if pin is None:  # past MAX_TOOLS_PER_SERVER: never stored, never callable
            return (
                f"Tool '{tool}' is one too many: its server lists over {MAX_TOOLS_PER_SERVER:,} tools, "
                "and the firewall does not let the ones past that through."
            )
        return refusal_text(pin)

    def observe(
        self,
        session: Session,
        raw: list[bytes],
        first_page: bool,
        new_tools: str,
        annotations: dict[str, dict[str, Any]],
        more: bool = False,
    ) -> list[str]:
        """Compare a page of the session's tools/list with the pins; returns the names to hide.

        ``new_tools`` (``quarantine`` or ``accept``) is the policy for a tool the server lists
        for the first time; a server's first listing (all its pages) is pinned whatever it says.
        Each listed tool's annotations are put in ``annotations``, by name; ``more`` says that
        the listing has further pages.
        """
        ident = self.identity(session)
        rows = self._rows.setdefault(ident, {})
        sid = session.session_id
        if first_page:
            if rows:
                self._tofu.pop(sid, None)
            else:
                self._tofu[sid] = ident
        first_use = self._tofu.get(sid) == ident
        hidden: set[str] = set()
        page: dict[str, str] = {}
        changed = False
        now = time.time()
        for item in raw:
            found = self._known_definition(item)
            if found is None:
                continue
            name = found.name
            if len(page) >= MAX_TOOLS_PER_SERVER and name not in page:  # a page past the cap: hidden
                hidden.add(name)
                self._over(ident, name)
                continue
            annotations[name] = found.annotations
            if name in page:  # listed twice in one page: hidden unless both say the same
                if page[name] != found.digest:
                    hidden.add(name)
                continue
            page[name] = found.digest
            pin = rows.get(name)
            if pin is None:
                if len(rows) >= MAX_TOOLS_PER_SERVER:
                    log.warning("server %r has %d tools pinned; %r is hidden", ident, len(rows), name)
                    hidden.add(name)
                    self._over(ident, name)
                elif first_use or new_tools == "accept":
                    why = (
                        "first listing of the server"
                        if first_use
                        else "new tool, accepted by policy new_tools"
                    )
                    rows[name] = Pin(ident, name, PINNED, found.digest, text_of(item), None, None, None, now)
                    self._save(rows[name], "tool_pinned", why)
                else:
                    rows[name] = Pin(
                        ident, name, NEW, None, None, found.digest, text_of(item), _review_id(), now
                    )
                    self._save(rows[name], "tool_new", "new tool on a known server: hidden until reviewed")
                    hidden.add(name)
                    changed = True
                continue
            if found.digest == pin.pinned_hash:
                if pin.state == CHANGED:  # another chat's server, or a change undone: the human decides
                    hidden.add(name)
                elif pin.state == REJECTED:  # the change the human rejected is undone
                    pin.state, pin.seen_hash, pin.seen, pin.review_id, pin.updated = (
                        PINNED,
                        None,
                        None,
                        None,
                        now,
                    )
                    self._save(pin, "tool_reverted", "the server lists the approved definition again")
                    changed = True
                continue
            hidden.add(name)
            if found.digest == pin.seen_hash and pin.state in QUARANTINED:
                continue  # already under review, or rejected
            pin.state = CHANGED if pin.pinned_hash is not None else NEW
            pin.seen_hash, pin.seen, pin.review_id, pin.updated = (
                found.digest,
                text_of(item),
                _review_id(),
                now,
            )
            what = "definition changed since it was approved" if pin.state == CHANGED else "new definition"
            self._save(
                pin, "tool_changed" if pin.state == CHANGED else "tool_new", f"{what}: hidden until reviewed"
            )
            changed = True
        if not more:  # the first listing is over: what comes later is new
            self._tofu.pop(sid, None)
        if changed:
            self._reblock(ident)
            self._on_change(ident, "tool definitions changed")
        return sorted(hidden | (self.blocked.get(ident, set()) & page.keys()))

    def _known_definition(self, item: bytes) -> Definition | None:
        """:func:`canonical` of ``item``, remembered by the SHA-256 of its bytes (without its text):
        a server lists the same bytes every time, and an unchanged listing then costs a hash per
        tool instead of a parse and a sorted re-serialisation."""
        key = hashlib.sha256(item).digest()
        found = self._known.get(key)
        if found is None:
            found = canonical(item)
            if found is None:
                return None
            if len(self._known) >= _KNOWN:
                self._known.clear()
            self._known[key] = found.without_text()
        return found

    def review(self, review_id: str, accept: bool) -> Pin:
        """Accept (re-pin) or reject the definition under review ``review_id``.

        Raises:
            PinError: no definition waits for review under that id (it may have changed since).
        """
        for rows in self._rows.values():
            for pin in rows.values():
                if pin.review_id == review_id and pin.state in QUARANTINED:
                    return self._decide(pin, accept)
        raise PinError(
            f"no tool definition under review {review_id} (it may have changed since it was listed)"
        )

    def _decide(self, pin: Pin, accept: bool) -> Pin:
        if not accept and pin.state == REJECTED:
            raise PinError(f"{pin.review_id} ({pin.tool} on {pin.server}) is already rejected")
        pin.updated = time.time()
        if accept:
            pin.pinned_hash, pin.pinned = pin.seen_hash, pin.seen
            pin.state, pin.seen_hash, pin.seen, review_id = PINNED, None, None, pin.review_id
            pin.review_id = None
            self._save(pin, "tool_accepted", f"review {review_id}: the new definition is pinned")
        else:
            pin.state = REJECTED
            self._save(pin, "tool_rejected", f"review {pin.review_id}: hidden and denied")
        self._reblock(pin.server)
        self._on_change(pin.server, f"{pin.tool} {'accepted' if accept else 'rejected'}")
        return pin

    def views(self, server: str | None = None) -> list[dict[str, Any]]:
        """Pins for a console: reviews first (with both definitions), then pinned tools."""
        pins = [
            pin
            for ident, rows in self._rows.items()
            if server is None or ident == server
            for pin in rows.values()
        ]
        order = {CHANGED: 0, NEW: 1, REJECTED: 2, PINNED: 3}
        pins.sort(key=lambda p: (order.get(p.state, 4), p.server, p.tool))
        return [pin.view(pin.state != PINNED and i < MAX_REVIEWS_LISTED) for i, pin in enumerate(pins)]

    def _over(self, ident: str, name: str) -> None:
        """A tool past :data:`MAX_TOOLS_PER_SERVER`: hidden and denied, remembered in memory only
        (and at most that many of them per server)."""
        over = self._overflow.setdefault(ident, set())
        if name not in over and len(over) < MAX_TOOLS_PER_SERVER:
            over.add(name)
            self._reblock(ident)

    def _reblock(self, ident: str) -> None:
        names = {name for name, pin in self._rows.get(ident, {}).items() if pin.state in QUARANTINED}
        names |= self._overflow.get(ident, set())
        if names:
            self.blocked[ident] = names
        else:
            self.blocked.pop(ident, None)

    def _save(self, pin: Pin, event: str, why: str) -> None:
        self._store.execute(
            "INSERT OR REPLACE INTO tool_pins (server, tool, state, pinned_hash, pinned, seen_hash, seen, "
            "review_id, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pin.server,
                pin.tool,
                pin.state,
                pin.pinned_hash,
                pin.pinned,
                pin.seen_hash,
                pin.seen,
                pin.review_id,
                pin.updated,
            ),
        )
        detail = {"why": why, "pinned": pin.pinned_hash, "seen": pin.seen_hash, "review_id": pin.review_id}
        self._store.audit(
            event, server=pin.server, tool=pin.tool, decision=pin.state, rule=RULE, detail=json.dumps(detail)
        )


def refusal_text(pin: Pin) -> str:
    """What the agent is told when it calls a quarantined tool."""
    where = f"review it in firewall-console (firewall-console tools; review {pin.review_id})"
    if pin.state == CHANGED:
        return (
            f"The definition of tool '{pin.tool}' (its description, schema or annotations) changed since "
            f"the user approved it, so the firewall holds it back until the user reviews the change: "
            f"ask the user to {where}. Do not retry the call before then."
        )
    if pin.state == NEW:
        return (
            f"Tool '{pin.tool}' is new on this server and the user has not reviewed it yet: ask the user "
            f"to {where}. Do not retry the call before then."
        )
    return (
        f"The user rejected the current definition of tool '{pin.tool}' in the firewall console; "
        "it cannot be called."
    )


def _review_id() -> str:
    return "R-" + secrets.token_hex(4).upper()


def quarantined_in(db_path: str, tool: str, server: str | None) -> list[tuple[str, str, str]]:
    """Read-only, for ``firewalld explain``: ``(server, state, review id)`` for each server on which
    ``tool`` is quarantined (only ``server`` if given). Nothing if there is no database yet."""
    import sqlite3

    if not os.path.exists(db_path):
        return []
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2)
        try:
            rows = db.execute(
                "SELECT server, state, review_id FROM tool_pins WHERE tool = ? AND state != ?", (tool, PINNED)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:  # an older database without the table, or none readable
        return []
    return [(s, st, r or "") for s, st, r in rows if server is None or s == server]
