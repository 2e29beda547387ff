"""Argument conditions: a call's arguments as rules see them, and one compiled condition.

:class:`Args` wraps one call's arguments and builds, on first use and once per call, the index of
keys at every depth and the :func:`~daemon.normalize.normalize` form and SQL words of each string.
:class:`Condition` is a compiled :class:`daemon.config.Condition`: a selector (``key`` or
``path``) and one test (``equals``, ``contains``, ``regex``, ``exists``, ``sql_keywords``, or a
comparison ``gt``/``gte``/``lt``/``lte``).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, KeysView
from dataclasses import dataclass
from decimal import Decimal

from daemon import config
from daemon.config import TESTS, PathStep, compile_regex, parse_path
from daemon.normalize import json_equal, normalize, normalize_json, normalize_name
from daemon.numbers import plain_digits, read_number
from daemon.sql import sql_words

__all__ = ["Args", "Condition", "norm_key"]

# Keys longer than this skip the name cache: an agent could otherwise pin megabytes in it.
_CACHEABLE = 512


def norm_key(text: str) -> str:
    """A name or key in normalize() form, cached unless it is long."""
    return normalize_name(text) if len(text) <= _CACHEABLE else normalize(text)


class Args:
    """One call's arguments, with the key index and normalized strings built on first use."""

    __slots__ = ("raw", "_index", "_texts", "_held", "_words")

    def __init__(self, raw: object) -> None:
        self.raw = raw
        self._index: dict[str, list[object]] | None = None
        self._texts: dict[str, str] = {}
        self._held: dict[str, bool] = {}
        self._words: dict[str, frozenset[str] | None] = {}

    def holds(self, cond: Condition) -> bool:
        """``cond.holds(self)``, once per distinct condition per call: policies repeat conditions
        (the same SQL regex or path test under several tools), and each is tested once."""
        held = self._held.get(cond.test)
        if held is None:
            held = self._held[cond.test] = cond.holds(self)
        return held

    def keys(self) -> KeysView[str]:
        """Every normalized key, at any depth (the index's keys)."""
        self.by_key("")
        assert self._index is not None
        return self._index.keys()

    def by_key(self, key: str) -> list[object]:
        if self._index is None:
            self._index = {}
            # A non-object `arguments` has no keys; iterative so deep nesting cannot overflow.
            stack: list[dict[str, object] | list[object]] = [self.raw] if isinstance(self.raw, dict) else []
            while stack:
                node = stack.pop()
                pairs = node.items() if isinstance(node, dict) else ((None, v) for v in node)
                for k, value in pairs:
                    if isinstance(k, str):  # list items have no key; msgpack maps may have int keys
                        self._index.setdefault(norm_key(k), []).append(value)
                    if isinstance(value, dict | list):
                        stack.append(value)
        return self._index.get(key, [])

    def by_path(self, steps: tuple[PathStep, ...]) -> list[object]:
        current = [self.raw]
        for kind, arg in steps:
            selected: list[object] = []
            for value in current:
                if kind == "key" and isinstance(value, dict) and arg in value:
                    selected.append(value[arg])
                elif kind == "index" and isinstance(value, list) and isinstance(arg, int):
                    if -len(value) <= arg < len(value):
                        selected.append(value[arg])
                elif kind == "any" and isinstance(value, dict | list):
                    selected.extend(value.values() if isinstance(value, dict) else value)
            current = selected
        return current

    def text(self, value: str) -> str:
        """``normalize(value)``, once per distinct string per call."""
        cached = self._texts.get(value)
        if cached is None:
            cached = self._texts[value] = normalize(value)
        return cached

    def sql_words(self, value: str) -> frozenset[str] | None:
        """:func:`~daemon.sql.sql_words` of ``value``, once per distinct string per call."""
        if value in self._words:
            return self._words[value]
        words = self._words[value] = sql_words(value)
        return words


def _flatten(values: list[object]) -> list[object]:
    # `contains`, `regex` and scalar `equals` look inside a selected list, one level deep.
    out: list[object] = []
    for value in values:
        if isinstance(value, list):
            out.extend(value)
        out.append(value)
    return out


_COMPARE: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled :class:`daemon.config.Condition`: one selector and exactly one test."""

    label: str
    test: str  # what it tests, for telling identical conditions of different rules apart
    key: str | None
    path: tuple[PathStep, ...] | None
    has_equals: bool
    equals: object
    contains: str | None
    regex: re.Pattern[str] | None
    exists: bool | None
    sql: frozenset[str] | None
    compare: tuple[Callable[[Decimal, Decimal], bool], Decimal] | None

    @classmethod
    def compile(cls, cond: config.Condition, label: str) -> Condition:
        where = f"key {cond.key!r}" if cond.key is not None else f"path {cond.path!r}"
        test = next(n for n in TESTS if n in cond.model_fields_set)
        bound = getattr(cond, test)
        return cls(
            label=f"{label} ({where} {test} {bound!r})",
            test=f"{where} {test} {json.dumps(bound, sort_keys=True)}",
            key=normalize(cond.key) if cond.key is not None else None,
            path=parse_path(cond.path) if cond.path is not None else None,
            has_equals=test == "equals",
            equals=normalize_json(cond.equals),
            contains=normalize(cond.contains) if cond.contains is not None else None,
            regex=compile_regex(cond.regex) if cond.regex is not None else None,
            exists=cond.exists,
            sql=frozenset(map(normalize, cond.sql_keywords)) if cond.sql_keywords is not None else None,
            compare=(_COMPARE[test], Decimal(repr(bound))) if test in _COMPARE else None,
        )

    def holds(self, args: Args) -> bool:
        values = args.by_key(self.key) if self.key is not None else args.by_path(self.path or ())
        if self.exists is not None:
            return bool(values) is self.exists
        if self.has_equals:
            candidates = values if isinstance(self.equals, list) else _flatten(values)
            return any(json_equal(v, self.equals) for v in candidates)
        return any(self._passes(value, args) for value in _flatten(values))

    def _passes(self, value: object, args: Args) -> bool:
        """Whether one selected value passes the test (``equals`` and ``exists`` aside)."""
        text = args.text(value) if isinstance(value, str) else None
        if self.compare is not None:
            compare, bound = self.compare
            number = read_number(value, text)
            return number is not None and not number.is_nan() and compare(number, bound)
        if text is None:
            # "^\d{5,}" means 10000 and up, however the number is spelt (1e16 included).
            number = read_number(value) if self.regex is not None else None
            return (
                number is not None
                and self.regex is not None
                and bool(self.regex.search(plain_digits(number)))
            )
        assert isinstance(value, str)
        if self.sql is not None:
            words = args.sql_words(value)
            return words is None or not self.sql.isdisjoint(words)
        if self.contains is not None:
            return self.contains in text
        if self.regex is not None:
            if self.regex.search(text):
                return True
            # A string that a lax server would run as a number is matched as that number too.
            number = read_number(value, text)
            return number is not None and bool(self.regex.search(plain_digits(number)))
        return False
