"""Pinned tool definitions as the console shows them: the diff of a change, and what is flagged in it.

The daemon sends each pin as a map (see ``daemon/pins.py``); :func:`pin_from_wire` turns it into
a :class:`ToolPin`. A definition is shown as readable lines (the description as its own
paragraph, schemas and annotations as indented JSON), and a change as a unified diff of those
lines. Nothing here escapes: every line goes through :func:`console.model.visible` where it is
printed, so a hidden character shows as ``\\uXXXX`` in the diff.

Flags (:func:`flags`) point a human at what deserves a second look in a definition; they never
hide or change it. They are: hidden characters (controls and terminal escapes, bidi overrides,
zero-width and other invisible characters, in any string of the definition), and text aimed at
the model rather than at a human, by the patterns in :data:`PATTERNS`.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from console.model import _float, _hidden, _str

#: Instruction-like text in a tool definition, aimed at the model: (what it is, pattern). Matched
#: case-insensitively on the definition's strings after NFKC with hidden characters removed.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE))
    for label, pattern in (
        (
            "tells the model to ignore its instructions",
            r"\b(ignore|disregard|forget|override)\b.{0,30}\b(previous|prior|above|earlier|all|other|system)\b"
            r".{0,20}\b(instructions?|prompts?|messages?|rules?|directions?)",
        ),
        (
            "tells the model to keep something from the user",
            r"\b(do not|don't|never|without)\b.{0,30}\b(tell|telling|inform|informing|mention|mentioning|"
            r"reveal|revealing|show|showing|notify|notifying|alert|alerting|ask|asking)\b.{0,20}\buser",
        ),
        ("poses as a system or priority message", r"<\s*/?\s*(important|system|instructions?|secret)\s*>"),
        ("talks about the system prompt", r"\bsystem\s+prompt\b"),
        (
            "mentions secrets or credentials",
            r"(~/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|\.env\b|\bapi[_ -]?keys?\b|\bpasswords?\b|\bsecrets?\b|"
            r"\bcredentials?\b|\bprivate[_ -]key\b|\baccess[_ -]tokens?\b|mcp\.json\b)",
        ),
        (
            "tells the model what to do with other tools",
            r"\b(before|after|instead of|when)\s+(calling|using|invoking|running)\s+"
            r"(any|another|other|the|this)\b"
            r"|\b(call|use|invoke)\s+(the\s+)?\w+\s+tool\b",
        ),
        ("contains a web address", r"\bhttps?://"),
    )
)


@dataclass(frozen=True, slots=True)
class ToolPin:
    """One server's tool and the state of its pin."""

    server: str
    tool: str
    state: str
    """``pinned``, ``changed``, ``new`` or ``rejected``."""
    review_id: str
    updated: float
    pinned: str | None
    """The approved definition (canonical JSON), when listed with the pin; else None."""
    seen: str | None
    """The definition under review or rejected, when listed with the pin; else None."""
    cut: bool
    """A definition was cut in the listing (over 64 KiB)."""

    @property
    def under_review(self) -> bool:
        """Waiting for a human: hidden from the agent and denied until accepted or rejected."""
        return self.state in ("changed", "new")


def pin_from_wire(raw: Mapping[str, Any]) -> ToolPin:
    """A :class:`ToolPin` from the daemon's map (missing or mistyped fields become empty)."""
    pinned, seen = raw.get("pinned"), raw.get("seen")
    return ToolPin(
        server=_str(raw, "server"),
        tool=_str(raw, "tool"),
        state=_str(raw, "state"),
        review_id=_str(raw, "review_id"),
        updated=_float(raw, "updated"),
        pinned=pinned if isinstance(pinned, str) else None,
        seen=seen if isinstance(seen, str) else None,
        cut=raw.get("pinned_cut") is True or raw.get("seen_cut") is True,
    )


def definition_lines(text: str | None) -> list[str]:
    """A definition as lines a human reads: name, title, the description as a paragraph, then
    the schemas and annotations as indented JSON (unescaped: print them through ``visible``)."""
    if text is None:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return text.split("\n")
    if not isinstance(value, dict):
        return [text]
    lines = [f"{key}: {_plain(value[key])}" for key in ("name", "title") if key in value]
    if "description" in value:
        lines.append("description:")
        lines += ["  " + line for line in _plain(value["description"]).split("\n")]
    for key in ("inputSchema", "outputSchema", "annotations"):
        if key in value:
            lines.append(f"{key}:")
            pretty = json.dumps(value[key], indent=2, sort_keys=True, ensure_ascii=False)
            lines += ["  " + line for line in pretty.split("\n")]
    return lines


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def diff_lines(pin: ToolPin) -> list[str]:
    """The unified diff from the approved definition to the one under review (for a new tool,
    every line added)."""
    old, new = definition_lines(pin.pinned), definition_lines(pin.seen)
    before = "approved" if pin.pinned is not None else "(never approved)"
    return list(difflib.unified_diff(old, new, before, "listed now", n=3, lineterm=""))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def flags(text: str | None, other_tools: Iterable[str] = ()) -> list[str]:
    """What deserves a second look in a definition: one line per finding, in a fixed order."""
    if text is None:
        return []
    try:
        value = json.loads(text)
    except ValueError:  # cut in the listing
        value = text
    strings = list(_strings(value))
    this = value.get("name") if isinstance(value, dict) else None
    found: list[str] = []
    hidden = sorted({ch for s in strings for ch in s if _hidden(ch) and ch not in "\n\t"})
    if hidden:
        names = ", ".join(f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}" for ch in hidden[:8])
        more = f" and {len(hidden) - 8} more" if len(hidden) > 8 else ""
        found.append(f"hidden characters (shown as \\u escapes): {names}{more}")
    plain = " ".join(
        "".join(ch for ch in unicodedata.normalize("NFKC", s) if not _hidden(ch) or ch in "\n\t")
        for s in strings
    )
    for label, pattern in PATTERNS:
        match = pattern.search(plain)
        if match:
            found.append(f"{label}: “{match.group()[:80]}”")
    mentioned = sorted(
        t for t in set(other_tools) if t != this and len(t) > 2 and re.search(rf"\b{re.escape(t)}\b", plain)
    )
    if mentioned:
        found.append("names other tools of this server: " + ", ".join(mentioned[:10]))
    return found
