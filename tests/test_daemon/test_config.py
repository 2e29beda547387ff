"""The policy file: the seed's format, the additions, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from daemon.config import (
    DEFAULT_CONFIG,
    AnnotationMatch,
    Condition,
    ConfigError,
    GlobalSection,
    PolicyFile,
    Rule,
    ServerSection,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]

#: The seed's bundled default_config.json, byte for byte.
SEED_CONFIG = """{
  "global": {
    "allow_prefixes": [
      "get_",
      "list_",
      "read_",
      "fetch_"
    ],
    "block_keywords": [
      "delete",
      "update",
      "create",
      "pay",
      "send",
      "transfer",
      "drop",
      "remove",
      "refund"
    ],
    "default_action": "block",
    "otp_attempt_count": 1
  },
  "servers": {
    "stripe": {
      "allow_prefixes": [],
      "block_keywords": [
        "refund",
        "charge"
      ],
      "default_action": "block"
    },
    "database": {
      "allow_prefixes": [
        "select_"
      ],
      "block_keywords": [
        "drop",
        "truncate",
        "alter"
      ],
      "default_action": "block"
    }
  }
}"""


def write(tmp_path: Path, config: Any, name: str = "firewall_config.json") -> Path:
    """Write ``config`` (a string as is, anything else as JSON) and return the file."""
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def problems(tmp_path: Path, config: Any) -> list[str]:
    """The problems load_config reports for ``config``; fails the test if it loads."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, config))
    assert str(info.value) == "\n".join(info.value.problems)
    return list(info.value.problems)


def test_seed_config_is_accepted_unchanged(tmp_path: Path) -> None:
    """The seed's own file loads, with "block" read as "approve" and its attempt count kept."""
    cfg = load_config(write(tmp_path, SEED_CONFIG))
    assert cfg.global_.allow_prefixes == ["get_", "list_", "read_", "fetch_"]
    assert cfg.global_.default_action == "approve"
    assert cfg.global_.otp_attempt_count == 1
    assert cfg.servers["stripe"].block_keywords == ["refund", "charge"]
    assert cfg.servers["database"].allow_prefixes == ["select_"]


def test_defaults_for_absent_keys(tmp_path: Path) -> None:
    """An empty global section gets the documented defaults, and servers is optional."""
    cfg = load_config(write(tmp_path, {"global": {}}))
    g = cfg.global_
    assert (g.default_action, g.otp_attempt_count, g.otp_length, g.otp_ttl_seconds) == ("approve", 3, 6, 300)
    assert g.rules == [] and cfg.servers == {}


@pytest.mark.parametrize(
    ("word", "action"), [("allow", "allow"), ("approve", "approve"), ("block", "approve"), ("deny", "deny")]
)
def test_every_action_word_is_accepted(tmp_path: Path, word: str, action: str) -> None:
    """allow, approve, block (a synonym of approve) and deny are all valid, everywhere."""
    cfg = load_config(
        write(tmp_path, {"global": {"default_action": word, "rules": [{"tool": "x", "action": word}]}})
    )
    assert cfg.global_.default_action == action
    assert cfg.global_.rules[0].action == action


def test_description_may_be_text_or_lines(tmp_path: Path) -> None:
    """A top-level description documents the file as one string or a list of lines."""
    assert load_config(write(tmp_path, {"description": "mine", "global": {}})).description == "mine"
    assert load_config(write(tmp_path, {"description": ["a", "b"], "global": {}})).description == ["a", "b"]


def test_wrong_enum_names_the_key(tmp_path: Path) -> None:
    """A misspelt action names the file, the key path, the choices and what was given."""
    config = {"global": {}, "servers": {"stripe": {"default_action": "blok"}}}
    assert problems(tmp_path, config) == [
        f"{tmp_path / 'firewall_config.json'}: servers.stripe.default_action: "
        "must be one of allow, approve, block, deny (got 'blok')"
    ]


def test_unknown_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    """A misspelt key is an error that suggests the right spelling."""
    [problem] = problems(tmp_path, {"global": {"alow_prefixes": ["get_"]}})
    assert problem.endswith("global.alow_prefixes: unknown key (did you mean 'allow_prefixes'?)")


@pytest.mark.parametrize(
    ("config", "where", "message"),
    [
        ({"servers": {}}, "global", "required key is missing"),
        (
            {"global": {"rules": [{"tool": "a", "action": "deny"}, {"tool_regex": "(", "action": "deny"}]}},
            "global.rules[1].tool_regex",
            "invalid regex '('",
        ),
        (
            {
                "global": {},
                "servers": {"db": {"rules": [{"args": [{"key": "q", "regex": "[a-"}], "action": "deny"}]}},
            },
            "servers.db.rules[0].args[0].regex",
            "invalid regex '[a-'",
        ),
        (
            {"global": {"rules": [{"tool": "a", "tool_regex": "b", "action": "deny"}]}},
            "global.rules[0]",
            "tool and tool_regex cannot be used together",
        ),
        (
            {"global": {"rules": [{"name": "nothing", "action": "allow"}]}},
            "global.rules[0]",
            "needs at least one of tool, tool_regex, args, annotations",
        ),
        (
            {"global": {"rules": [{"tool": "", "action": "allow"}]}},
            "global.rules[0].tool",
            "must not be empty",
        ),
        ({"global": {"rules": [{"tool": "x"}]}}, "global.rules[0].action", "required key is missing"),
        ({"global": {"rules": [{"args": [], "action": "deny"}]}}, "global.rules[0].args", "at least 1 item"),
        (
            {
                "global": {
                    "rules": [{"args": [{"key": "a", "path": "$.a", "exists": True}], "action": "deny"}]
                }
            },
            "global.rules[0].args[0]",
            "needs exactly one of key, path (got key, path)",
        ),
        (
            {"global": {"rules": [{"args": [{"key": "a"}], "action": "deny"}]}},
            "global.rules[0].args[0]",
            "needs exactly one of equals, contains, regex, exists, sql_keywords, gt, gte, lt, lte (got none)",
        ),
        (
            {"global": {"rules": [{"args": [{"key": "a", "contains": "x", "equals": 1}], "action": "deny"}]}},
            "global.rules[0].args[0]",
            "(got equals, contains)",
        ),
        (
            {"global": {"rules": [{"args": [{"path": "a.b", "exists": True}], "action": "deny"}]}},
            "global.rules[0].args[0].path",
            "must start with '$'",
        ),
        (
            {"global": {"rules": [{"args": [{"path": "$.a[x]", "exists": True}], "action": "deny"}]}},
            "global.rules[0].args[0].path",
            "cannot parse path",
        ),
        (
            {"global": {"rules": [{"args": [{"key": "a", "contains": ""}], "action": "deny"}]}},
            "global.rules[0].args[0].contains",
            "must not be empty",
        ),
        (
            {"global": {"rules": [{"annotations": {"readonlyHint": True}, "action": "allow"}]}},
            "global.rules[0].annotations.readonlyHint",
            "unknown key (did you mean 'readOnlyHint'?)",
        ),
        (
            {"global": {"rules": [{"annotations": {}, "action": "allow"}]}},
            "global.rules[0].annotations",
            "needs at least one of readOnlyHint",
        ),
        (
            {"global": {"rules": [{"annotations": {"readOnlyHint": None}, "action": "allow"}]}},
            "global.rules[0].annotations",
            "needs at least one of readOnlyHint",
        ),
        (
            {"global": {"rules": [{"args": [{"key": "a", "exists": None}], "action": "deny"}]}},
            "global.rules[0].args[0]",
            "exists must not be null",
        ),
        ({"global": {"allow_prefixes": ["get_", ""]}}, "global.allow_prefixes", "must not be empty"),
        ({"global": {"block_keywords": ["\u200b"]}}, "global.block_keywords", "must not be empty"),
        ({"global": {"block_keywords": "delete"}}, "global.block_keywords", "valid list (got 'delete')"),
        ({"global": {"otp_attempt_count": "3"}}, "global.otp_attempt_count", "valid integer (got '3')"),
        ({"global": {"otp_attempt_count": 0}}, "global.otp_attempt_count", "greater than or equal to 1"),
        ({"global": {"otp_length": 13}}, "global.otp_length", "less than or equal to 12"),
        ({"global": {"otp_ttl_seconds": 0}}, "global.otp_ttl_seconds", "greater than or equal to 1"),
        (
            {"global": {}, "servers": {"s": {"trust_annotations": 1}}},
            "servers.s.trust_annotations",
            "valid boolean",
        ),
        ({"global": {}, "servers": {"s": {"otp_length": 8}}}, "servers.s.otp_length", "unknown key"),
        ({"global": {"trust_annotations": True}}, "global.trust_annotations", "unknown key"),
        ({"global": {}, "servers": {"s": None}}, "servers.s", "valid dictionary"),
        ({"global": {}, "comment": "x"}, "comment", "unknown key"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, config: Any, where: str, message: str) -> None:
    """Each kind of mistake is refused with the key path and a plain message."""
    found = problems(tmp_path, config)
    prefix = f"{tmp_path / 'firewall_config.json'}: {where}: "
    assert any(p.startswith(prefix) and message in p for p in found), found


def test_every_problem_is_listed(tmp_path: Path) -> None:
    """Several mistakes in one file are reported together, one line each."""
    found = problems(
        tmp_path, {"global": {"default_action": "nope", "otp_length": 2, "rules": [{"tool": "x"}]}}
    )
    assert len(found) == 3


def test_duplicate_key_is_refused_with_its_path(tmp_path: Path) -> None:
    """A key written twice in one object is an error naming where, even deep inside a rule."""
    text = '{"global": {"rules": [{"tool": "a", "action": "deny", "action": "allow"}]}}'
    assert problems(tmp_path, text) == [
        f"{tmp_path / 'firewall_config.json'}: global.rules[0].action: "
        "duplicate key (the earlier value would be silently dropped)"
    ]


def test_duplicate_server_section_is_refused(tmp_path: Path) -> None:
    """Two sections for one server would silently drop the first; that is refused."""
    text = '{"global": {}, "servers": {"db": {"rules": []}, "db": {}}}'
    [problem] = problems(tmp_path, text)
    assert ": servers.db: duplicate key" in problem


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    """A syntax error is reported with its line and column."""
    [problem] = problems(tmp_path, '{\n  "global": {\n    "allow_prefixes": ["get_",]\n  }\n}')
    assert "invalid JSON at line 3, column 31" in problem


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "top level must be a JSON object"), ('{"global": {"otp_length": NaN}}', "NaN")],
)
def test_non_object_and_non_json_values_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """A top level that is not an object, or a NaN, is refused."""
    [problem] = problems(tmp_path, text)
    assert message in problem


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file names the path and says so, without a traceback-looking message."""
    with pytest.raises(ConfigError, match=r"nope\.json: no such file$"):
        load_config(tmp_path / "nope.json")


def test_unreadable_and_non_utf8_files_are_errors(tmp_path: Path) -> None:
    """A directory or a file that is not UTF-8 is a ConfigError, not an OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"global": {"block_keywords": ["caf\xe9"]}}')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(bad)


def test_bundled_default_loads() -> None:
    """The bundled default extends the seed's lists, with three attempts and block by default."""
    cfg = load_config(None)
    seed = json.loads(SEED_CONFIG)["global"]
    assert cfg.global_.otp_attempt_count == 3
    assert cfg.global_.default_action == "approve"
    assert cfg.global_.block_keywords[: len(seed["block_keywords"])] == seed["block_keywords"]
    assert set(seed["allow_prefixes"]) <= set(cfg.global_.allow_prefixes)
    assert set(cfg.servers) == {"stripe", "database"}
    assert all(rule.action != "allow" for rule in cfg.global_.rules)  # rules only add caution
    assert DEFAULT_CONFIG.name == "default_config.json"


def _keys_used(value: Any, into: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            into.add(key)
            _keys_used(item, into)
    elif isinstance(value, list):
        for item in value:
            _keys_used(item, into)
    return into


def test_example_config_loads_and_uses_every_key() -> None:
    """config.example.json loads, and every key of every model appears in it at least once."""
    path = ROOT / "config.example.json"
    load_config(path)
    used = _keys_used(json.loads(path.read_text()), set())
    models: list[type[BaseModel]] = [
        PolicyFile,
        GlobalSection,
        ServerSection,
        Rule,
        Condition,
        AnnotationMatch,
    ]
    every = {field.alias or name for model in models for name, field in model.model_fields.items()}
    assert every - used == set()
    actions = {rule["action"] for rule in _rules(json.loads(path.read_text()))}
    assert actions >= {"allow", "approve", "deny"}


def _rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = list(config["global"].get("rules", []))
    for server in config.get("servers", {}).values():
        rules += server.get("rules", [])
    return rules


def test_every_field_has_a_docstring() -> None:
    """Every schema field carries a description, for the docs and for editors."""
    for model in (PolicyFile, GlobalSection, ServerSection, Rule, Condition, AnnotationMatch):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
