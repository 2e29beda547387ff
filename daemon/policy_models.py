"""The policy file's schema: pydantic models for its sections, rules and argument conditions, and
the path dialect and regex flavour the conditions use.

Plain pydantic models rather than pydantic-settings: the policy must come from the file alone,
never from an environment variable that an agent's shell could set. Every model forbids unknown
keys and validates strictly (``"3"`` is not a number, ``1`` is not ``true``), because a
security policy that half-understands its file is worse than one that refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon.normalize import normalize

#: What a call can be told: run now, wait for a human, or never.
Action: TypeAlias = Literal["allow", "approve", "deny"]
# "block" is the seed's word for "needs approval"; it is accepted and read as "approve".
_ACTIONS: dict[str, Action] = {"allow": "allow", "approve": "approve", "block": "approve", "deny": "deny"}


def _parse_action(value: object) -> object:
    if isinstance(value, str) and value in _ACTIONS:
        return _ACTIONS[value]
    raise ValueError(f"must be one of allow, approve, block, deny (got {value!r})")


_ActionField = Annotated[Action, BeforeValidator(_parse_action)]


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a policy regex the one way both validation and evaluation use.

    Case-insensitive because the text it searches is already case-folded, so an upper-case
    letter in a pattern could otherwise never match.
    """
    return re.compile(pattern, re.IGNORECASE)


#: One step of a parsed path: ``("key", name)``, ``("index", n)`` or ``("any", None)``.
PathStep: TypeAlias = tuple[Literal["key", "index", "any"], str | int | None]

_PATH_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][\w-]*)      # .name
      | \.\*|\[\*\]                      # .* or [*]
      | \[(?P<index>-?\d+)\]             # [3]
      | \[(?P<q>['"])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)\]  # ['name'] or ["name"]
    """,
    re.VERBOSE,
)


def parse_path(path: str) -> tuple[PathStep, ...]:
    """Parse the small JSONPath dialect of argument conditions.

    Args:
        path: ``$`` followed by any of ``.name``, ``['name']``, ``[n]``, ``[*]`` and ``.*``.

    Returns:
        The steps after ``$``; an empty tuple selects the whole arguments value.

    Raises:
        ValueError: The path is not in the dialect.
    """
    if not path.startswith("$"):
        raise ValueError(f"a path must start with '$' (got {path!r})")
    steps: list[PathStep] = []
    pos = 1
    while pos < len(path):
        m = _PATH_STEP.match(path, pos)
        if m is None:
            raise ValueError(f"cannot parse path {path!r} at character {pos + 1} ({path[pos:]!r})")
        if m["name"] is not None:
            steps.append(("key", m["name"]))
        elif m["index"] is not None:
            steps.append(("index", int(m["index"])))
        elif m["q"] is not None:
            steps.append(("key", m["quoted"]))
        else:
            steps.append(("any", None))
        pos = m.end()
    return tuple(steps)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)


#: The tests a condition can make; it makes exactly one.
TESTS = ("equals", "contains", "regex", "exists", "sql_keywords", "gt", "gte", "lt", "lte")


class Condition(_Model):
    """A test on the call's arguments: select values by ``key`` or ``path``, then test them.

    The condition holds if ANY selected value passes the test (``exists: false`` holds when
    nothing is selected). Strings are compared in :func:`~daemon.normalize.normalize` form.
    """

    key: str | None = None
    """A key name, searched at any depth of the arguments (objects inside objects and lists)."""
    path: str | None = None
    """A small JSONPath: ``$``, ``.name``, ``['name']``, ``[n]``, ``[*]``, ``.*``."""
    equals: JsonValue = None
    """Any JSON value; holds if a selected value (or, for a list, one of its elements) equals it."""
    contains: str | None = None
    """A keyword; holds if a selected string, or a string element of a selected list, contains it."""
    regex: str | None = None
    """A regex searched (case-insensitively) in selected strings and numbers, and list elements."""
    exists: bool | None = None
    """``true``: holds if the key or path selects anything; ``false``: if it selects nothing."""
    sql_keywords: list[str] | None = Field(None, min_length=1)
    """SQL keywords (single words); holds if a selected string, read as SQL, has one of them as a
    statement word: outside string literals, quoted names and comments, under every common
    dialect's reading (see :mod:`daemon.sql`)."""
    gt: int | float | None = None
    """A number; holds if a selected number, or a string that reads as one, is greater."""
    gte: int | float | None = None
    """A number; holds if a selected number, or a string that reads as one, is greater or equal."""
    lt: int | float | None = None
    """A number; holds if a selected number, or a string that reads as one, is less."""
    lte: int | float | None = None
    """A number; holds if a selected number, or a string that reads as one, is less or equal."""

    @field_validator("sql_keywords")
    @classmethod
    def _one_word_each(cls, words: list[str] | None) -> list[str] | None:
        for word in words or ():
            if not re.fullmatch(r"\w+", normalize(word)):
                raise ValueError(f"entries must be single words (got {word!r})")
        return words

    @field_validator("gt", "gte", "lt", "lte")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and (value != value or value in (float("inf"), float("-inf"))):
            raise ValueError("must be a finite number")
        return value

    @field_validator("key", "path", "contains", "regex")
    @classmethod
    def _check(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.field_name in ("key", "contains") and not normalize(value):
            raise ValueError("must not be empty")
        if info.field_name == "path":
            parse_path(value)
        if info.field_name == "regex":
            _check_regex(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        selectors = [name for name in ("key", "path") if getattr(self, name) is not None]
        if len(selectors) != 1:
            raise ValueError(f"needs exactly one of key, path (got {_names(selectors)})")
        # `equals` may legitimately be null, so presence is "was the key written", not "not None".
        tests = [n for n in TESTS if n in self.model_fields_set]
        if len(tests) != 1:
            raise ValueError(f"needs exactly one of {', '.join(TESTS)} (got {_names(tests)})")
        if tests[0] != "equals" and getattr(self, tests[0]) is None:
            raise ValueError(f"{tests[0]} must not be null")
        return self


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) or "none"


def _check_regex(pattern: str) -> None:
    try:
        compile_regex(pattern)
    except (re.error, OverflowError) as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


class AnnotationMatch(_Model):
    """Values the tool's MCP annotations must have; unset hints are not tested."""

    read_only_hint: bool | None = Field(None, alias="readOnlyHint")
    """The tool says it does not modify its environment."""
    destructive_hint: bool | None = Field(None, alias="destructiveHint")
    """The tool says it may destroy or overwrite data (the spec's default for unannotated tools)."""
    idempotent_hint: bool | None = Field(None, alias="idempotentHint")
    """The tool says repeating a call with the same arguments has no further effect."""
    open_world_hint: bool | None = Field(None, alias="openWorldHint")
    """The tool says it reaches outside systems (the spec's default for unannotated tools)."""

    @model_validator(mode="after")
    def _not_empty(self) -> AnnotationMatch:
        if not self.required():  # {"readOnlyHint": null} tests nothing either
            raise ValueError(
                "needs at least one of readOnlyHint, destructiveHint, idempotentHint, openWorldHint"
            )
        return self

    def required(self) -> tuple[tuple[str, bool], ...]:
        """The hints this match tests, as ``(spec name, wanted value)`` pairs."""
        values = self.model_dump(by_alias=True, exclude_none=True)
        return tuple((name, bool(value)) for name, value in values.items())


class Rule(_Model):
    """An ordered rule: when every part that is present matches, ``action`` decides the call."""

    name: str | None = None
    """A label for the console, the audit log and ``firewalld explain``."""
    tool: str | None = None
    """A glob on the whole normalized tool name (``*``, ``?``, ``[abc]``); no wildcard: exact."""
    tool_regex: str | None = None
    """A regex searched (case-insensitively) in the normalized tool name."""
    args: list[Condition] | None = Field(None, min_length=1)
    """Conditions on the arguments; all must hold."""
    annotations: AnnotationMatch | None = None
    """Values the tool's annotations must have (see ``trust_annotations``)."""
    action: _ActionField
    """``allow``, ``approve`` (``block`` is a synonym) or ``deny``."""

    @field_validator("tool")
    @classmethod
    def _tool_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not normalize(value):
            raise ValueError("must not be empty (use '*' to match every tool)")
        return value

    @field_validator("tool_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            _check_regex(value)
        return value

    @model_validator(mode="after")
    def _has_a_test(self) -> Rule:
        if self.tool is not None and self.tool_regex is not None:
            raise ValueError("tool and tool_regex cannot be used together")
        if self.tool is None and self.tool_regex is None and self.args is None and self.annotations is None:
            raise ValueError(
                'needs at least one of tool, tool_regex, args, annotations (use "tool": "*" for every tool)'
            )
        return self


class _Section(_Model):
    description: str | list[str] | None = None
    """Free text (or a list of lines) documenting the section; JSON has no comments."""
    allow_prefixes: list[str] = []
    """Tool-name prefixes that are allowed; a server's list extends the global one."""
    block_keywords: list[str] = []
    """Keywords that send a tool for approval when its name contains one; a server's list extends
    the global one."""
    rules: list[Rule] = []
    """Ordered rules, the server's tried before the global ones; the first that matches decides."""
    approved: list[Rule] = []
    """Rules the human approved for good (the console's "always" writes them): a call that would
    need approval and matches one is allowed. Only ``"action": "allow"``; they are looked at only
    when the verdict is ``approve``, so they never let through what a ``deny`` refuses."""

    @field_validator("approved")
    @classmethod
    def _allow_only(cls, rules: list[Rule]) -> list[Rule]:
        for rule in rules:
            if rule.action != "allow":
                raise ValueError(f"approved rules can only allow (got {rule.action!r})")
        return rules

    @field_validator("allow_prefixes", "block_keywords")
    @classmethod
    def _no_empty_words(cls, words: list[str]) -> list[str]:
        for word in words:
            if not normalize(word):
                # "" is a prefix and a substring of every name: one empty entry would allow, or
                # send for approval, every call.
                raise ValueError("entries must not be empty (an empty entry would match every tool)")
        return words


class ServerSection(_Section):
    """Settings for one target server, selected with ``--name``."""

    default_action: _ActionField | None = None
    """The action when nothing else matched; absent: the global ``default_action``."""
    otp_attempt_count: int | None = Field(None, ge=1)
    """Wrong codes allowed before a pending action is locked; absent: the global value."""
    trust_annotations: bool = False
    """Believe this server's tool annotations; otherwise every tool counts as unannotated."""
    new_tools: Literal["quarantine", "accept"] | None = None
    """A tool that a known server lists for the first time: hidden until reviewed, or pinned at
    once (audited); absent: the global value."""
    approve_via_elicitation: bool | list[str] = False
    """Let the MCP client's own dialog (``elicitation/create``) approve this server's paused calls:
    ``true`` for every client, or a list of client names (``clientInfo.name``) it applies to.
    Off by default: an automated client may accept every dialog on its own, and the dialog is
    answered by the agent's own process, so only turn it on for clients that show it to a human."""

    @field_validator("approve_via_elicitation")
    @classmethod
    def _client_names(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list of clients is not allowed (use false to turn it off)")
            if any(not name.strip() for name in value):
                raise ValueError("client names must not be empty")
        return value


class GlobalSection(_Section):
    """Settings for every server."""

    default_action: _ActionField = "approve"
    """The action when no rule, keyword or prefix matched."""
    otp_attempt_count: int = Field(3, ge=1)
    """Wrong codes allowed before a pending action is locked."""
    otp_length: int = Field(6, ge=4, le=12)
    """Digits in an approval code."""
    otp_ttl_seconds: int = Field(300, ge=1, le=86400)
    """Seconds an approval code stays valid."""
    new_tools: Literal["quarantine", "accept"] = "quarantine"
    """A tool that a known server (one with pinned tools) lists for the first time: ``quarantine``
    hides it from the agent and denies its calls until a human reviews it in the console;
    ``accept`` pins it at once and audits it. The first listing of a server is always pinned."""


class PolicyFile(_Model):
    """The whole policy file."""

    description: str | list[str] | None = None
    """Free text (or a list of lines) documenting the file; JSON has no comments."""
    global_: GlobalSection = Field(alias="global")
    """Settings for every server."""
    servers: dict[str, ServerSection] = {}
    """Per-server sections, keyed by the name given to ``--name``."""
