"""Grant matching (exact, and the policy's reading too), persistence, expiry; the "always" edit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.always import apply_rule, preview_rule, rule_for
from daemon.config import load_config
from daemon.grants import Grant, GrantError, Grants, parse_matches
from daemon.policy import load_policy
from daemon.store import Store


def grant(matches: list[dict[str, object]]) -> Grant:
    return Grant("G-1", "args", "t", None, None, None, parse_matches(matches), 0.0, None, "A-1")


@pytest.mark.parametrize(
    ("value", "covered"),
    [
        ("alice", True),
        ("ALICE", False),
        ("ali\u200bce", False),
        ("ａｌｉｃｅ", False),
        (["alice"], False),
        (None, False),
    ],
)
def test_equals_is_exact(value: object, covered: bool) -> None:
    assert grant([{"key": "to", "equals": "alice"}]).covers({"to": value}) is covered


def test_equals_keeps_types_apart() -> None:
    g = grant([{"key": "n", "equals": 1}])
    assert g.covers({"n": 1}) and g.covers({"n": 1.0})
    assert not g.covers({"n": True}) and not g.covers({"n": "1"})
    assert not g.covers({"m": 1}) and not g.covers([1]) and not g.covers({"N": 1})


def test_under_resolves_dots_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "link").symlink_to(tmp_path / "out")
    g = grant([{"key": "path", "under": str(tmp_path / "in")}])
    assert g.covers({"path": str(tmp_path / "in" / "a.txt")})
    assert g.covers({"path": str(tmp_path / "in" / "new" / "b.txt")})
    for outside in (
        f"{tmp_path}/in/../out/c",
        str(tmp_path / "in" / "link" / "d"),
        f"{tmp_path}/in2/e",
        "in/f",
        f"{tmp_path}/IN/g",
        f"{tmp_path}/in\0/h",
    ):
        assert not g.covers({"path": outside}), outside


def test_bad_matches_are_refused() -> None:
    for bad in (
        [{"key": "p", "under": "relative"}],
        [{"key": "p"}],
        [{"key": "p", "equals": 1, "under": "/x"}],
        [{"key": "", "equals": 1}],
        [{"key": "p", "equals": 1}, {"key": "p", "equals": 2}],
    ):
        with pytest.raises(GrantError):
            parse_matches(bad)


def test_grants_survive_a_reopen_and_expire(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "db"))
    grants = Grants(store)
    made = grants.make(
        scope="args",
        tool="t",
        server="s",
        config_path=None,
        session_id="S-1",
        matches=parse_matches([{"key": "to", "equals": "a"}]),
        minutes=1,
        action_id="A-1",
    )
    store.close()
    store = Store(str(tmp_path / "db"))
    again = Grants(store)
    assert again.find("S-2", "s", None, "t", {"to": "a"}) is not None  # args grants span chats
    assert again.find("S-2", "other", None, "t", {"to": "a"}) is None
    assert again.expire(made.created + 59) == []
    assert [g.grant_id for g in again.expire(made.created + 61)] == [made.grant_id]
    assert again.find("S-1", "s", None, "t", {"to": "a"}) is None
    store.close()


def test_always_edits_in_place_and_the_rule_only_turns_approve_into_allow(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    text = (
        '{\n  "global": {\n    "default_action": "approve",\n'
        '    "rules": [{"tool": "pay", "args": [{"key": "amount", "gt": 100}], "action": "deny"}]\n'
        "  },\n"
        '  "servers": {"shop": {"allow_prefixes": ["x_"]}}\n}\n'
    )
    path.write_text(text)
    os.chmod(path, 0o640)
    rule = rule_for("pay", parse_matches([{"key": "currency", "equals": "eur"}]), "A-1")
    diff, sha = preview_rule(str(path), "shop", rule)
    changed = [line[0] for line in diff.splitlines()[2:] if line[:1] in "+-"]
    assert path.read_text() == text and changed == ["-", "+"]  # one line, the server section's
    apply_rule(str(path), "shop", rule, sha)
    assert os.stat(path).st_mode & 0o777 == 0o640
    new = path.read_text()
    assert new.startswith(text[: text.index('"servers"')])
    (written,) = json.loads(new)["servers"]["shop"]["approved"]
    assert written["args"] == [{"path": "$.currency", "equals": "eur"}]
    load_config(path)
    policy = load_policy(str(path), "shop")
    assert policy.decide("pay", {"currency": "eur", "amount": 5}).action == "allow"
    assert policy.decide("pay", {"currency": "eur", "amount": 500}).action == "deny"
    assert policy.decide("pay", {"currency": "usd", "amount": 5}).action == "approve"
    assert policy.decide("pay", {"currency": "eur"}, None).action == "allow"
    with pytest.raises(GrantError, match="changed since"):
        apply_rule(str(path), "shop", rule, sha)


def test_always_refuses_paths_and_globs_stay_exact() -> None:
    with pytest.raises(GrantError):
        rule_for("t", parse_matches([{"key": "p", "under": "/x"}]), "A-1")
    assert rule_for("a*b", (), "A-1")["tool_regex"] == "^a\\*b$"


def test_approved_rules_must_allow(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"global": {"approved": [{"tool": "x", "action": "deny"}]}}))
    with pytest.raises(Exception, match="approved rules can only allow"):
        load_config(path)
