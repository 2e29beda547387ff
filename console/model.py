"""What the console knows of the daemon: typed, immutable views of the wire maps.

The daemon sends sessions, pending actions and audit rows as maps of plain values. They are
turned into the frozen dataclasses below in exactly one place (the ``*_from_wire`` functions),
so no widget ever handles a ``dict[str, Any]``. A missing or mistyped field becomes an empty
value rather than an exception: a newer or older daemon must never crash the console.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Unicode categories that draw nothing, or draw something other than what they are: controls
#: (C0, C1, DEL: every terminal escape starts with one), format characters (bidi overrides and
#: isolates, zero-width spaces and joiners, soft hyphens), line and paragraph separators, private
#: use, unassigned code points and lone surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"})
#: Characters of other categories that draw nothing either (Unicode's default-ignorable code
#: points outside Cf: Hangul fillers, the combining grapheme joiner, variation selectors) or a
#: blank that passes for a space (the braille blank).
_BLANK = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
#: Everything that is not printable ASCII: the only characters worth a closer look.
_SUSPECT = re.compile(r"[^\x20-\x7e]")


def _hidden(char: str) -> bool:
    category = unicodedata.category(char)
    return category in _HIDDEN_CATEGORIES or (category == "Zs" and char != " ") or char in _BLANK


def visible(text: str, keep: str = "") -> str:
    """``text`` with every control, invisible or look-alike-space character spelt as ``\\uXXXX``.

    The one function through which every text the console prints passes, in every mode (the text
    commands, the TUI, desktop notifications): what the console shows must be what runs. A tool
    name or argument holding a terminal escape could otherwise move the cursor and rewrite the
    lines of another action; a bidi override or a zero-width space could read as something
    harmless. The result holds no character of :data:`_HIDDEN_CATEGORIES` (bar those in ``keep``).

    Args:
        text: What to show.
        keep: Characters to leave alone even so (the newlines of indented JSON).
    """
    if text.isascii() and text.isprintable():
        return text

    def spell(match: re.Match[str]) -> str:
        char = match.group()
        return _escape(char) if _hidden(char) and char not in keep else char

    # The regex skips printable ASCII at C speed: 10 MB of arguments take milliseconds, not seconds.
    return _SUSPECT.sub(spell, text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def pretty_arguments(arguments_json: str) -> str:
    """The frozen arguments as indented JSON, hidden characters escaped.

    Strings stay readable (``ensure_ascii=False``); ``json.dumps`` already escapes the C0
    controls, and :func:`visible` escapes the rest, which JSON accepts inside strings. Text that
    is not JSON is shown as it came, escaped the same way.
    """
    try:
        value = json.loads(arguments_json)
    except ValueError:
        return visible(arguments_json, keep="\n")
    # Outside strings json.dumps writes only ASCII, so the newlines kept are its own indentation.
    return visible(json.dumps(value, indent=2, ensure_ascii=False), keep="\n")


def command_line(target: Iterable[str]) -> str:
    """The target's argv as a shell would spell it."""
    return visible(shlex.join(target))


def countdown(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) until a deadline; ``expired`` once it has passed."""
    if seconds <= 0:
        return "expired"
    whole = int(seconds + 0.999)  # 0.2 s left still shows as 0:01, never 0:00 before it expires
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _float(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if not isinstance(value, list | tuple):
        return ()
    return tuple(str(part) for part in value)


@dataclass(frozen=True, slots=True)
class Action:
    """One action waiting for approval, as a console sees it (code included)."""

    action_id: str
    session_id: str
    server: str
    client: str
    target: tuple[str, ...]
    cwd: str
    tool: str
    arguments_json: str
    rule: str
    reason: str
    created: float
    deadline: float
    attempts_left: int
    code: str
    #: The daemon cut the arguments from its listing: ``arguments_json`` is only their start.
    arguments_cut: bool = False
    #: Size in bytes (UTF-8 JSON) and SHA-256 (hex) of the full arguments.
    arguments_bytes: int = 0
    arguments_sha256: str = ""
    held_until: float = 0.0
    """Until when its chat holds the call open, so that it can be approved here (0: it does not)."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One shim the daemon serves (or served since it started)."""

    session_id: str
    server: str
    client: str
    target: tuple[str, ...]
    cwd: str
    pid: int
    connected: bool
    created: float
    allowed: int
    paused: int
    denied: int
    #: The policy file the session uses ("" for the bundled defaults).
    config_path: str = ""
    #: What is wrong with its policy: a --name that matches no server section, a file that does not load.
    warnings: tuple[str, ...] = ()

    @property
    def policy(self) -> str:
        """Which policy file and server section the session uses, in words."""
        where = self.config_path or "(bundled defaults)"
        return f"{where} [{self.server}]" if self.server else where


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the daemon's audit log."""

    row_id: int
    ts: float
    event: str
    session_id: str
    server: str
    tool: str
    action_id: str
    decision: str
    rule: str
    detail: str


@dataclass(frozen=True, slots=True)
class DaemonState:
    """Everything the pending and sessions views show: one answer to ``ListPending``."""

    sessions: tuple[SessionInfo, ...] = ()
    actions: tuple[Action, ...] = ()

    def action(self, action_id: str | None) -> Action | None:
        """The pending action with this id, if it is still pending."""
        return next((a for a in self.actions if a.action_id == action_id), None)


def action_from_wire(raw: Mapping[str, Any]) -> Action:
    """An :class:`Action` from one entry of ``PendingList.actions``."""
    return Action(
        action_id=_str(raw, "action_id"),
        session_id=_str(raw, "session_id"),
        server=_str(raw, "server"),
        client=_str(raw, "client"),
        target=_strings(raw, "target"),
        cwd=_str(raw, "cwd"),
        tool=_str(raw, "tool"),
        arguments_json=_str(raw, "arguments_json") or "{}",
        rule=_str(raw, "rule"),
        reason=_str(raw, "reason"),
        created=_float(raw, "created"),
        deadline=_float(raw, "deadline"),
        attempts_left=_int(raw, "attempts_left"),
        code=_str(raw, "code"),
        arguments_cut=raw.get("arguments_cut") is True,
        arguments_bytes=_int(raw, "arguments_bytes"),
        arguments_sha256=_str(raw, "arguments_sha256"),
        held_until=_float(raw, "held_until"),
    )


def session_from_wire(raw: Mapping[str, Any]) -> SessionInfo:
    """A :class:`SessionInfo` from one entry of ``PendingList.sessions``."""
    return SessionInfo(
        session_id=_str(raw, "session_id"),
        server=_str(raw, "server"),
        client=_str(raw, "client"),
        target=_strings(raw, "target"),
        cwd=_str(raw, "cwd"),
        pid=_int(raw, "pid"),
        connected=raw.get("connected") is True,
        created=_float(raw, "created"),
        allowed=_int(raw, "allowed"),
        paused=_int(raw, "paused"),
        denied=_int(raw, "denied"),
        config_path=_str(raw, "config_path"),
        warnings=_strings(raw, "warnings"),
    )


def audit_from_wire(raw: Mapping[str, Any]) -> AuditEntry:
    """An :class:`AuditEntry` from one of ``LogRows.rows``."""
    return AuditEntry(
        row_id=_int(raw, "id"),
        ts=_float(raw, "ts"),
        event=_str(raw, "event"),
        session_id=_str(raw, "session_id"),
        server=_str(raw, "server"),
        tool=_str(raw, "tool"),
        action_id=_str(raw, "action_id"),
        decision=_str(raw, "decision"),
        rule=_str(raw, "rule"),
        detail=_str(raw, "detail"),
    )


def state_from_wire(
    sessions: Iterable[Mapping[str, Any]], actions: Iterable[Mapping[str, Any]]
) -> DaemonState:
    """A :class:`DaemonState` from a ``PendingList``: actions newest first."""
    parsed = sorted((action_from_wire(a) for a in actions), key=lambda a: a.created, reverse=True)
    return DaemonState(tuple(session_from_wire(s) for s in sessions), tuple(parsed))


_FILTER_KEYS = {"session": "session_id", "server": "server", "tool": "tool"}


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history filter: exact session, server and tool (asked of the daemon) and free words.

    Written as ``tool:delete_user server:github session:S-1A2B3C4D some words``; the words match
    any column of a row, case-insensitively.
    """

    session_id: str | None = None
    server: str | None = None
    tool: str | None = None
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> HistoryQuery:
        """Read a filter as typed in the history view."""
        exact: dict[str, str] = {}
        words: list[str] = []
        for token in text.split():
            key, sep, value = token.partition(":")
            if sep and value and key.lower() in _FILTER_KEYS:
                exact[_FILTER_KEYS[key.lower()]] = value
            else:
                words.append(token.casefold())
        return cls(exact.get("session_id"), exact.get("server"), exact.get("tool"), tuple(words))

    def matches(self, entry: AuditEntry) -> bool:
        """Whether a row passes the whole filter (the daemon applies the exact part itself)."""
        for want, have in (
            (self.session_id, entry.session_id),
            (self.server, entry.server),
            (self.tool, entry.tool),
        ):
            if want is not None and want != have:
                return False
        if not self.words:
            return True
        haystack = " ".join(
            (
                entry.event,
                entry.session_id,
                entry.server,
                entry.tool,
                entry.action_id,
                entry.decision,
                entry.rule,
                entry.detail,
            )
        ).casefold()
        return all(word in haystack for word in self.words)
