"""The "always" grant: an ``approved`` rule written into the policy file, shown as a diff first.

The rule goes into the ``approved`` list of the chat's server section (``global`` for a chat
without ``--name``). A rule there is only consulted when the policy's verdict is ``approve``
(:meth:`daemon.policy.Policy.decide`), so it can never let through what a ``deny`` rule or the
built-in self-protection refuses. The edit is made in the text, not by re-serialising the file:
every other byte (formatting, key order, other content) stays as it was, and the result is
checked twice before it replaces the file: it must parse to exactly the old content plus the new
rule, and it must load as a policy (what ``firewalld check-config`` runs). The file is replaced
atomically (a temporary file in the same directory, then ``rename``), keeping its mode.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
import tempfile
import time
from typing import Any

from daemon.config import ConfigError, load_config
from daemon.grants import GrantError, Match

__all__ = ["apply_rule", "preview_rule", "rule_for"]

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\]:,])|(-?[0-9][0-9.eE+\-]*|true|false|null))', re.S)


def rule_for(
    tool: str, matches: tuple[Match, ...], action_id: str, now: float | None = None
) -> dict[str, Any]:
    """The rule an "always" grant writes: this exact tool, with these exact argument values.

    Raises:
        GrantError: a path match (``under``), which a policy rule cannot state safely.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    rule: dict[str, Any] = {"name": f"added from the firewall console on {stamp} (approving {action_id})"}
    if any(c in tool for c in "*?["):  # a glob would match more than this one name
        rule["tool_regex"] = "^" + re.escape(tool) + "$"
    else:
        rule["tool"] = tool
    args = []
    for match in matches:
        if match.test != "equals":
            raise GrantError(
                f"'{match.describe()}' cannot be written as a policy rule: use a timed grant for a path"
            )
        args.append({"path": _path_to(match.key), "equals": match.value})
    if args:
        rule["args"] = args
    rule["action"] = "allow"
    return rule


def _path_to(key: str) -> str:
    """The JSON path of a top-level argument (a path, not a key: a key matches at any depth,
    where a decoy could satisfy it)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"$.{key}"
    if "'" in key or "\\" in key:
        raise GrantError(f"argument {key!r} cannot be named in a policy rule: use a timed grant")
    return f"$['{key}']"


def preview_rule(path: str, server: str | None, rule: dict[str, Any]) -> tuple[str, str]:
    """The unified diff that :func:`apply_rule` would make, and the SHA-256 of the file now.

    Raises:
        GrantError: the file cannot be read or edited.
    """
    old = _read(path)
    new = _edited(path, old, server, rule)
    return _diff(path, old, new), hashlib.sha256(old.encode()).hexdigest()


def apply_rule(path: str, server: str | None, rule: dict[str, Any], base_sha256: str) -> str:
    """Add the rule to the file, if it is still the one the diff was made from; returns the diff.

    Raises:
        GrantError: the file changed since the preview, or cannot be edited or written.
    """
    old = _read(path)
    if hashlib.sha256(old.encode()).hexdigest() != base_sha256:
        raise GrantError(f"{path} changed since the change was shown: look at the new diff first")
    new = _edited(path, old, server, rule)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
        fd, temp = tempfile.mkstemp(prefix=".firewall-policy-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(new)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            os.replace(temp, os.path.realpath(path))
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as exc:
        raise GrantError(f"cannot write {path}: {exc.strerror or exc}") from None
    return _diff(path, old, new)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise GrantError(f"cannot read the policy file {path}: {exc}") from None


def _diff(path: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (now)", f"{path} (after)")
    )


def _edited(path: str, text: str, server: str | None, rule: dict[str, Any]) -> str:
    """The file's text with the rule added, checked to parse and to load as a policy."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GrantError(f"{path} is not valid JSON ({exc}): fix it first") from None
    if not isinstance(data, dict) or not isinstance(data.get("global", {}), dict):
        raise GrantError(f"{path} is not a policy file")
    wanted = copy.deepcopy(data)
    if server is None:
        steps: list[tuple[str, Any]] = [("global", {}), ("approved", [])]
    else:
        steps = [("servers", {}), (server, {}), ("approved", [])]
    node: Any = wanted
    for key, empty in steps:
        if not isinstance(node.get(key, empty), type(empty)):
            raise GrantError(f"{path}: {key} is not a JSON {type(empty).__name__}")
        node = node.setdefault(key, empty)
    node.append(rule)
    new = _insert(text, [k for k, _ in steps], rule)
    if new is None or _loads(new) != wanted:
        raise GrantError(f"{path}: could not add the rule without changing the rest of the file")
    _check(path, new)
    return new


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check(path: str, text: str) -> None:
    """Load the edited text as a policy, as ``firewalld check-config`` would."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".firewall-check-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        load_config(temp)
    except ConfigError as exc:
        raise GrantError(f"the edited policy would not load: {exc}") from None
    finally:
        os.unlink(temp)


def _insert(text: str, keys: list[str], rule: dict[str, Any]) -> str | None:
    """Add ``rule`` at the end of the list at ``keys`` (creating the missing objects and list),
    editing only the text where it goes; None if the text could not be read."""
    spans = _spans(text)
    if spans is None:
        return None
    for depth in range(len(keys), -1, -1):
        found = spans.get(tuple(keys[:depth]))
        if found is None:
            continue
        missing = keys[depth:]
        value = json.dumps(rule, ensure_ascii=False)
        for i, key in enumerate(reversed(missing)):  # wrap the rule in what is missing
            inner = f"[{value}]" if i == 0 else value
            value = "{" + json.dumps(key, ensure_ascii=False) + ": " + inner + "}"
        if missing:
            value = value[1:-1]  # a member ("key": value) of the object found
        _start, end, last = found
        if last is None:  # an empty container
            return text[: end - 1] + value + text[end - 1 :]
        gap = last
        while gap > 0 and text[gap - 1] in " \t\r\n":
            gap -= 1
        indent = text[gap:last] or " "
        after = end - 1  # the closing bracket; the last element ends before the space in front of it
        while text[after - 1] in " \t\r\n":
            after -= 1
        return text[:after] + "," + indent + value + text[after:]
    return None


def _spans(text: str) -> dict[tuple[str, ...], tuple[int, int, int | None]] | None:
    """For each object or list reached through object keys only (``("servers", "x")``): its
    start, the end after its closing bracket, and where its last element (or member's key)
    starts, None if empty. None if the text is not JSON this reader follows."""
    spans: dict[tuple[str, ...], tuple[int, int, int | None]] = {}
    # Open containers: [path (None below a list), start, bracket, last element start, last key]
    stack: list[list[Any]] = []
    expect_key = False
    pos = 0
    while (m := _TOKEN.match(text, pos)) is not None:
        pos = m.end()
        string, punct, _scalar = m.groups()
        start = m.start(m.lastindex or 1)
        top = stack[-1] if stack else None
        if punct is not None and punct in ":,":
            expect_key = punct == "," and top is not None and top[2] == "{"
            continue
        if punct is not None and punct in "}]":
            if top is None:
                return None
            stack.pop()
            if top[0] is not None:
                spans[tuple(top[0])] = (top[1], pos, top[3])
            expect_key = False
            continue
        if top is not None and top[2] == "{" and expect_key:
            if string is None:
                return None
            top[3], top[4], expect_key = start, json.loads(string), False
            continue
        if top is None:
            path: tuple[str, ...] | None = ()
        elif top[2] == "[":
            top[3], path = start, None
        else:
            path = (*top[0], top[4]) if top[0] is not None else None
        if punct is not None:  # { or [
            stack.append([path, start, punct, None, None])
            expect_key = punct == "{"
    if stack or text[pos:].strip():
        return None
    return spans
