"""The policy file: its schema, and loading it with errors that name the key at fault.

The seed's format is accepted unchanged: a required ``global`` section and optional
``servers.<name>`` sections with ``allow_prefixes``, ``block_keywords``, ``default_action`` and
``otp_attempt_count``. On top of it come ordered ``rules``, a few OTP settings and
``trust_annotations``; ``config.example.json`` at the repository root shows every key.

The schema is in :mod:`daemon.policy_models` (re-exported here); this module loads a file into it.

Exceptions::

    ConfigError    the file is missing, unreadable, not JSON, has a duplicate key or breaks
                   the schema; the message names the file and the key path
"""

from __future__ import annotations

import difflib
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.policy_models import (
    TESTS,
    Action,
    AnnotationMatch,
    Condition,
    GlobalSection,
    PathStep,
    PolicyFile,
    Rule,
    ServerSection,
    compile_regex,
    parse_path,
)

__all__ = [
    "DEFAULT_CONFIG",
    "TESTS",
    "Action",
    "AnnotationMatch",
    "Condition",
    "ConfigError",
    "GlobalSection",
    "PathStep",
    "PolicyFile",
    "Rule",
    "ServerSection",
    "compile_regex",
    "load_config",
    "parse_path",
]

DEFAULT_CONFIG = Path(__file__).with_name("default_config.json")


class ConfigError(Exception):
    """Raised by :func:`load_config` when the policy file cannot be used.

    Attributes:
        problems: One line per problem, each ``<file>: <key path>: <what is wrong>``.
    """

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))


class _DuplicateKeys(dict[str, Any]):
    """A parsed JSON object that had the same key more than once (located after parsing)."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _DuplicateKeys(obj)
    marked.duplicates = [key for key, n in Counter(key for key, _ in pairs).items() if n > 1]
    return marked


def _find_duplicates(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, _DuplicateKeys):
        for key in value.duplicates:
            yield (*loc, key)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _find_duplicates(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _find_duplicates(item, (*loc, index))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _format_loc(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_KEYS = sorted(
    {
        f.alias or n
        for m in (Condition, AnnotationMatch, Rule, ServerSection, GlobalSection, PolicyFile)
        for n, f in m.model_fields.items()
    }
)


_TYPE_NAMES = {"str", "int", "bool", "float", "dict", "list"}


def _describe(error: Any) -> tuple[tuple[str | int, ...], str]:
    """Turn one pydantic error into a key path and a plain-English message."""
    # pydantic puts validator and union-member names ("function-after[...]", "list[str]") into
    # locations; a user never wrote them.
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not ("[" in p or p in _TYPE_NAMES))
    kind, given = error["type"], error.get("input")
    if kind == "value_error":
        return loc, str(error["ctx"]["error"])
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), _KEYS, n=1)
        return loc, "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing":
        return loc, "required key is missing"
    message = error["msg"][0].lower() + error["msg"][1:]
    return loc, f"{message} (got {given!r})"


def load_config(path: str | os.PathLike[str] | None) -> PolicyFile:
    """Read and validate a policy file.

    Args:
        path: The file to read; ``None`` reads the bundled ``daemon/default_config.json``.

    Returns:
        The validated policy file.

    Raises:
        ConfigError: The file is missing, unreadable, not UTF-8, not JSON, has a duplicate key
            in any object, or does not fit the schema. Every problem found is listed, each
            naming the file and the key path (``servers.stripe.rules[2].args[0].regex``).
    """
    file = Path(path) if path is not None else DEFAULT_CONFIG
    name = str(path) if path is not None else str(DEFAULT_CONFIG)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{name}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: not valid UTF-8 (byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    except ValueError as exc:
        raise ConfigError([f"{name}: invalid JSON: {exc}"]) from None
    # A duplicated key makes json keep the last value and silently drop the first (often a whole
    # list of rules), so it is refused outright.
    duplicates = [
        f"{name}: {_format_loc(loc)}: duplicate key (the earlier value would be silently dropped)"
        for loc in _find_duplicates(data)
    ]
    if duplicates:
        raise ConfigError(duplicates)
    if not isinstance(data, dict):
        raise ConfigError([f"{name}: the top level must be a JSON object (got {type(data).__name__})"])
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(error)
            problems.append(f"{name}: {_format_loc(loc)}: {message}")
        raise ConfigError(list(dict.fromkeys(problems))) from None
