"""The compiled form of a policy's parts: a :class:`Verdict`, a rule compiled for matching
(:class:`_Rule`), and what a tool name alone decides (:class:`_NameEntry`); :mod:`daemon.policy`
evaluates them in order."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from daemon.conditions import Args, Condition
from daemon.config import Action, Rule, compile_regex
from daemon.normalize import normalize

_PHRASE: dict[str, str] = {"allow": "is allowed", "approve": "needs approval", "deny": "is denied"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says about one call.

    Attributes:
        action: ``allow``, ``approve`` or ``deny``.
        rule: Which part of the policy decided, e.g. ``servers.stripe.rules[0] 'big refunds'``,
            ``global.block_keywords 'delete'`` or ``servers.db.default_action``.
        reason: One plain-English sentence for the agent and the console.
    """

    action: Action
    rule: str
    reason: str


def _shown(tool: str) -> str:
    # repr() makes invisible characters visible (a zero-width space shows as \u200b).
    return repr(tool) if len(tool) <= 80 else repr(tool[:80]) + "..."


def _decision(verdict: Verdict) -> str:
    return f"decision: {verdict.action} by {verdict.rule}: {verdict.reason}"


@dataclass(frozen=True, slots=True)
class _Rule:
    label: str
    action: Action
    tool: str  # how the tool part reads in explain(), "" when the rule has none
    tool_test: Callable[[str], object] | None
    conditions: tuple[Condition, ...]
    hints: tuple[tuple[str, bool], ...]
    #: Keys (normalized) that must be somewhere in the arguments for the rule to match: those of
    #: its key conditions other than ``exists: false``. Lets decide() skip it with a set test.
    needs: frozenset[str]
    #: Top-level keys (as written) that its ``$.name...`` path conditions start with.
    needs_top: frozenset[str]

    @classmethod
    def compile(cls, rule: Rule, label: str) -> _Rule:
        if rule.name:
            label = f"{label} '{rule.name}'"
        tool_test: Callable[[str], object] | None = None
        tool = ""
        if rule.tool is not None:
            pattern = normalize(rule.tool)
            tool = f"tool {rule.tool!r}"
            has_wildcard = any(c in pattern for c in "*?[")
            tool_test = re.compile(fnmatch.translate(pattern)).match if has_wildcard else pattern.__eq__
        elif rule.tool_regex is not None:
            tool = f"tool_regex {rule.tool_regex!r}"
            tool_test = compile_regex(rule.tool_regex).search
        conditions = tuple(Condition.compile(c, f"args[{i}]") for i, c in enumerate(rule.args or ()))
        hints = rule.annotations.required() if rule.annotations is not None else ()
        needs = frozenset(c.key for c in conditions if c.key is not None and c.exists is not False)
        needs_top = frozenset(
            str(c.path[0][1])
            for c in conditions
            if c.path and c.path[0][0] == "key" and c.exists is not False
        )
        return cls(label, rule.action, tool, tool_test, conditions, hints, needs, needs_top)

    def matches(self, args: Args, hints: Mapping[str, bool]) -> bool:
        """Whether this rule matches (its tool part already did): :meth:`failure` is ``None``."""
        for name, wanted in self.hints:
            if hints[name] is not wanted:
                return False
        for cond in self.conditions:
            if not args.holds(cond):
                return False
        return True

    def failure(self, args: Args, hints: Mapping[str, bool]) -> str | None:
        """Why this rule does not match (its tool part already did), or ``None`` if it does."""
        for name, wanted in self.hints:
            if hints[name] is not wanted:
                return (
                    f"annotation {name} is {str(hints[name]).lower()}, the rule wants {str(wanted).lower()}"
                )
        for cond in self.conditions:
            if not args.holds(cond):
                return f"{cond.label} does not hold"
        return None

    def verdict(self, tool: str) -> Verdict:
        by = "under" if self.action == "approve" else "by"
        return Verdict(
            self.action, self.label, f"Tool {_shown(tool)} {_PHRASE[self.action]} {by} rule {self.label}."
        )


@dataclass(frozen=True, slots=True)
class _NameEntry:
    """What depends on the tool name alone: the rules that could match, and steps 2, 4 and 5."""

    normalized: str
    candidates: tuple[_Rule, ...]
    #: The verdict of step 2 (a block keyword in the name), or ``None``.
    blocked: Verdict | None
    #: Steps 4 and 5 (allow prefixes, default_action), for when neither step 2 nor 3 decided.
    fallback: Verdict
    #: explain() lines for step 2, then for steps 4 and 5.
    trace: tuple[str, ...]
    rest_trace: tuple[str, ...]
    #: The keys the candidates test (anywhere, and at the top of the arguments): see
    #: :meth:`Policy.decide`.
    keys_tested: frozenset[str]
    top_keys_tested: frozenset[str]

    def applicable(self, present: AbstractSet[str], top: AbstractSet[str]) -> tuple[_Rule, ...]:
        """The candidates, in order, less those that test a key the arguments lack (they cannot
        match)."""
        return tuple(
            rule
            for rule in self.candidates
            if not (rule.needs and not rule.needs <= present)
            and not (rule.needs_top and not rule.needs_top <= top)
        )
