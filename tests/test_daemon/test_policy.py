"""The policy engine: order of evaluation, evasions, argument rules, annotations, explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.config import PolicyFile, load_config
from daemon.policy import Policy, Verdict, compile_policy, load_policy

ROOT = Path(__file__).resolve().parents[2]
#: The seed's default_config.json (test_config checks the byte-for-byte file loads unchanged).
SEED_CONFIG = {
    "global": {
        "allow_prefixes": ["get_", "list_", "read_", "fetch_"],
        "block_keywords": [
            "delete",
            "update",
            "create",
            "pay",
            "send",
            "transfer",
            "drop",
            "remove",
            "refund",
        ],
        "default_action": "block",
        "otp_attempt_count": 1,
    },
    "servers": {
        "stripe": {"allow_prefixes": [], "block_keywords": ["refund", "charge"], "default_action": "block"},
        "database": {
            "allow_prefixes": ["select_"],
            "block_keywords": ["drop", "truncate", "alter"],
            "default_action": "block",
        },
    },
}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True}


def policy(config: dict[str, Any], server: str | None = None) -> Policy:
    """Compile an in-memory policy file, validated exactly as a file on disk would be."""
    return compile_policy(PolicyFile.model_validate(config), server)


def seed(tmp_path: Path, server: str | None = None) -> Policy:
    """The seed's own configuration file, loaded from disk."""
    path = tmp_path / "firewall_config.json"
    path.write_text(json.dumps(SEED_CONFIG))
    return load_policy(str(path), server)


def rules(*items: dict[str, Any], **global_: Any) -> Policy:
    """A policy with these global rules and an "allow" default, so only a rule can refuse."""
    return policy({"global": {"default_action": "allow", "rules": list(items), **global_}})


# --- the seed's documented behaviour ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "server", "action", "rule"),
    [
        ("get_balance", None, "allow", "global.allow_prefixes 'get_'"),
        ("list_customers", None, "allow", "global.allow_prefixes 'list_'"),
        ("delete_user", None, "approve", "global.block_keywords 'delete'"),
        ("stripe_refund", "stripe", "approve", "global.block_keywords 'refund'"),
        ("capture_charge", "stripe", "approve", "servers.stripe.block_keywords 'charge'"),
        ("capture_charge", None, "approve", "global.default_action"),
        ("select_users", "database", "allow", "servers.database.allow_prefixes 'select_'"),
        ("truncate_logs", "database", "approve", "servers.database.block_keywords 'truncate'"),
        ("frobnicate", None, "approve", "global.default_action"),
        ("frobnicate", "stripe", "approve", "servers.stripe.default_action"),
    ],
)
def test_seed_examples_behave_as_documented(
    tmp_path: Path, tool: str, server: str | None, action: str, rule: str
) -> None:
    """The seed README's examples keep their outcome with the seed's file."""
    verdict = seed(tmp_path, server).decide(tool, {"id": 42})
    assert (verdict.action, verdict.rule) == (action, rule)


def test_seed_known_limitation_is_kept_with_the_seed_file(tmp_path: Path) -> None:
    """With the seed's file (no rules), get_data with DROP TABLE still passes, as its README says."""
    assert seed(tmp_path).decide("get_data", {"sql": "DROP TABLE users"}).action == "allow"


def test_bundled_default_catches_the_seed_known_limitation() -> None:
    """The bundled default's SQL rule sends get_data with DROP TABLE for approval."""
    verdict = load_policy(None, None).decide("get_data", {"sql": "DROP TABLE users"})
    assert verdict.action == "approve"
    assert verdict.rule.startswith("global.rules[0] ")
    assert load_policy(None, None).decide("get_data", {"sql": "SELECT 1"}).action == "allow"


def test_block_keyword_beats_allow_prefix(tmp_path: Path) -> None:
    """The documented difference from the seed: get_and_delete_all needs approval."""
    verdict = seed(tmp_path).decide("get_and_delete_all", {})
    assert verdict == Verdict(
        "approve",
        "global.block_keywords 'delete'",
        "Tool 'get_and_delete_all' needs approval because its name contains the blocked keyword 'delete'.",
    )


def test_seed_attempt_count_and_server_settings(tmp_path: Path) -> None:
    """otp_attempt_count comes from the file; a server may override it and the default action."""
    assert seed(tmp_path).otp_attempt_count == 1
    p = policy(
        {
            "global": {"otp_attempt_count": 2, "default_action": "block"},
            "servers": {"s": {"otp_attempt_count": 5, "default_action": "allow", "trust_annotations": True}},
        },
        "s",
    )
    assert (p.otp_attempt_count, p.trust_annotations, p.server_name) == (5, True, "s")
    assert (p.otp_length, p.otp_ttl_seconds) == (6, 300)
    assert p.decide("frob", {}).rule == "servers.s.default_action"
    assert p.decide("frob", {}).action == "allow"


def test_unknown_server_uses_global_rules_with_a_warning(tmp_path: Path) -> None:
    """A --name not in servers applies the global section and says so."""
    p = seed(tmp_path, "github")
    assert p.warnings and "'github'" in p.warnings[0]
    assert p.decide("capture_charge", {}).rule == "global.default_action"
    assert seed(tmp_path, "stripe").warnings == ()
    assert seed(tmp_path).warnings == ()


# --- evasion -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool",
    [
        "DELETE_user",
        "ｄｅｌｅｔｅ_user",
        "de\u200blete_user",
        "d\u0435lete_user",
        "del\u00adete_user",
        "get_DEL\u0415TE",
    ],
)
def test_evasive_tool_names_still_need_approval(tmp_path: Path, tool: str) -> None:
    """Case, fullwidth, zero-width, Cyrillic and soft-hyphen spellings all hit 'delete'."""
    verdict = seed(tmp_path).decide(tool, {})
    assert (verdict.action, verdict.rule) == ("approve", "global.block_keywords 'delete'")


@pytest.mark.parametrize(
    "tool",
    [
        "get_and_d\u00e9lete_user",  # accented
        "get_and_de\u0301lete_user",  # a combining accent
        "get_and_\u0111elete_user",  # d with stroke
        "read_and_dr\u00f8p",
        "list_then_r\u00e9move",
    ],
)
def test_accented_keywords_behind_an_allow_prefix_need_approval(tmp_path: Path, tool: str) -> None:
    """An accent on a blocked keyword does not turn a read-prefixed name into an allowed one."""
    verdict = seed(tmp_path).decide(tool, {})
    assert verdict.action == "approve"
    assert verdict.rule.startswith("global.block_keywords")


def test_evasive_names_hit_exact_rules_and_visible_in_reason() -> None:
    """An exact-name rule matches every spelling, and the reason shows invisible characters."""
    p = rules({"tool": "drop_database", "action": "deny"})
    verdict = p.decide("DROP_\u200bdatabase", {})
    assert verdict.action == "deny"
    assert "\\u200b" in verdict.reason


def test_configured_words_are_normalized() -> None:
    """Keywords and prefixes written in capitals or fullwidth match like plain ones."""
    p = policy(
        {"global": {"block_keywords": ["ＷＩＰＥ"], "allow_prefixes": ["Peek_"], "default_action": "deny"}}
    )
    assert p.decide("wipe_disk", {}).action == "approve"
    assert p.decide("peek_disk", {}).action == "allow"


@pytest.mark.parametrize("tool", ["", "\u200b", "\u00ad\ufeff"])
def test_empty_tool_name_is_denied(tool: str) -> None:
    """A name that is empty, or empty once invisible characters go, is denied even by a '*' allow."""
    verdict = rules({"tool": "*", "action": "allow"}).decide(tool, {})
    assert (verdict.action, verdict.rule) == ("deny", "tool name")


# --- rules on names ------------------------------------------------------------------------------


def test_rules_come_first_and_first_match_wins() -> None:
    """Server rules beat global rules, any rule beats keywords, and the first match decides."""
    p = policy(
        {
            "global": {
                "block_keywords": ["delete"],
                "rules": [
                    {"tool": "delete_*", "action": "deny"},
                    {"tool": "delete_draft", "action": "allow"},
                ],
            },
            "servers": {
                "mail": {"rules": [{"name": "drafts are cheap", "tool": "delete_draft", "action": "allow"}]}
            },
        },
        "mail",
    )
    assert p.decide("delete_draft", {}).rule == "servers.mail.rules[0] 'drafts are cheap'"
    assert p.decide("delete_draft", {}).action == "allow"
    assert p.decide("delete_user", {}).rule == "global.rules[0]"
    assert p.decide("delete_user", {}).action == "deny"


@pytest.mark.parametrize(
    ("rule", "tool", "hit"),
    [
        ({"tool": "drop_table"}, "drop_table", True),
        ({"tool": "drop_table"}, "drop_tables", False),  # exact, not a prefix
        ({"tool": "drop_*"}, "drop_tables", True),
        ({"tool": "drop_*"}, "xdrop_tables", False),  # the glob covers the whole name
        ({"tool": "*_v?"}, "run_v2", True),
        ({"tool": "[ab]_go"}, "b_go", True),
        ({"tool": "Drop_*"}, "DROP_x", True),  # both sides normalized
        ({"tool": "*"}, "anything", True),
        ({"tool_regex": "^(rm|wipe)_"}, "wipe_disk", True),
        ({"tool_regex": "disk"}, "wipe_disk", True),  # search, not match
        ({"tool_regex": "^DISK"}, "disk_wipe", True),  # case-insensitive on the folded name
        ({"tool_regex": "^rm_"}, "form_x", False),
    ],
)
def test_tool_patterns(rule: dict[str, Any], tool: str, hit: bool) -> None:
    """Globs are whole-name and exact without wildcards; tool_regex searches; all on normalized names."""
    assert (rules({**rule, "action": "deny"}).decide(tool, {}).action == "deny") is hit


# --- rules on arguments -------------------------------------------------------------------------

NESTED = {"query": {"filters": [{"field": "status", "value": "ACTIVE"}], "sql": "DROP TABLE x"}, "limit": 5}


@pytest.mark.parametrize(
    ("condition", "arguments", "hit"),
    [
        # key: searched at any depth, in objects inside lists too
        ({"key": "sql", "regex": r"\bdrop\s+table\b"}, NESTED, True),
        ({"key": "value", "equals": "active"}, NESTED, True),
        ({"key": "value", "equals": "inactive"}, NESTED, False),
        ({"key": "SQL", "contains": "drop"}, NESTED, True),  # key names are normalized too
        ({"key": "limit", "equals": 5}, NESTED, True),
        ({"key": "limit", "equals": "5"}, NESTED, False),  # a string is not a number
        ({"key": "limit", "exists": True}, NESTED, True),
        ({"key": "force", "exists": True}, NESTED, False),
        ({"key": "force", "exists": False}, NESTED, True),
        ({"key": "sql", "contains": "ｄｒｏｐ"}, NESTED, True),  # the keyword is normalized
        ({"key": "sql", "contains": "drop"}, {"sql": "DR\u200bOP TABLE"}, True),  # so is the value
        ({"key": "sql", "contains": "drop"}, {"sql": "d\u0433op"}, False),
        # path: exact addressing
        ({"path": "$.query.sql", "contains": "drop"}, NESTED, True),
        ({"path": "$.sql", "contains": "drop"}, NESTED, False),  # not at the top level
        ({"path": "$['query']['filters'][0].field", "equals": "status"}, NESTED, True),
        ({"path": "$.query.filters[-1].value", "equals": "active"}, NESTED, True),
        ({"path": "$.query.filters[3].value", "exists": True}, NESTED, False),
        ({"path": "$.query.filters[*].value", "regex": "^act"}, NESTED, True),
        ({"path": "$.query.*", "contains": "table"}, NESTED, True),
        ({"path": "$.Query.sql", "exists": True}, NESTED, False),  # path keys are exact
        ({"path": "$", "exists": True}, NESTED, True),
        # lists: contains, regex and scalar equals look at the elements
        ({"key": "to", "contains": "evil"}, {"to": ["a@x.org", "boss@EVIL.com"]}, True),
        ({"key": "to", "equals": "a@x.org"}, {"to": ["a@x.org", "b@y.org"]}, True),
        ({"key": "to", "equals": ["a@x.org"]}, {"to": ["a@x.org", "b@y.org"]}, False),
        ({"key": "to", "equals": ["A@x.org", "b@y.org"]}, {"to": ["a@x.org", "b@y.org"]}, True),
        ({"key": "to", "regex": "@evil\\."}, {"to": ["x@evil.com"]}, True),
        ({"path": "$.to[1]", "exists": True}, {"to": ["x"]}, False),
        # types: JSON equality, numbers searched in their JSON text
        ({"key": "force", "equals": True}, {"force": 1}, False),
        ({"key": "force", "equals": True}, {"force": True}, True),
        ({"key": "force", "equals": None}, {"force": None}, True),
        ({"key": "force", "equals": None}, {}, False),
        ({"key": "amount", "regex": r"^\d{6,}"}, {"amount": 250000}, True),
        ({"key": "amount", "regex": r"^\d{6,}"}, {"amount": "250000"}, True),
        ({"key": "amount", "regex": r"^\d{6,}"}, {"amount": 2500}, False),
        ({"key": "opts", "equals": {"Mode": "FAST"}}, {"opts": {"mode": "fast"}}, True),
        ({"key": "opts", "contains": "fast"}, {"opts": {"mode": "fast"}}, False),  # objects are not strings
    ],
)
def test_argument_conditions(condition: dict[str, Any], arguments: object, hit: bool) -> None:
    """Key and path selectors with equals, contains, regex and exists, nested and in lists."""
    verdict = rules({"args": [condition], "action": "deny"}).decide("run", arguments)
    assert (verdict.action == "deny") is hit, verdict


def test_all_conditions_must_hold() -> None:
    """A rule's conditions are ANDed."""
    p = rules(
        {
            "tool": "transfer",
            "args": [{"key": "currency", "equals": "usd"}, {"key": "amount", "regex": r"^\d{5,}"}],
            "action": "deny",
        }
    )
    assert p.decide("transfer", {"currency": "USD", "amount": 50000}).action == "deny"
    assert p.decide("transfer", {"currency": "EUR", "amount": 50000}).action == "allow"
    assert p.decide("transfer", {"currency": "USD", "amount": 500}).action == "allow"


@pytest.mark.parametrize("arguments", [None, [], ["sql"], "DROP TABLE x", 7])
def test_non_object_arguments_have_no_keys(arguments: object) -> None:
    """Non-object arguments are treated as {} by key conditions."""
    p = rules({"args": [{"key": "sql", "exists": False}], "action": "deny"})
    assert p.decide("run", arguments).action == "deny"


def test_root_path_sees_non_object_arguments() -> None:
    """A '$' path still sees arguments that are not an object."""
    p = rules({"args": [{"path": "$", "contains": "drop"}], "action": "deny"})
    assert p.decide("run", "DROP TABLE x").action == "deny"
    assert p.decide("run", ["x", "drop"]).action == "deny"
    assert p.decide("run", {"a": "drop"}).action == "allow"


def test_deeply_nested_arguments_do_not_overflow() -> None:
    """Key search is iterative: arguments nested far deeper than the recursion limit are fine."""
    deep: Any = {"sql": "drop table t"}
    for _ in range(5000):
        deep = {"x": [deep]}
    assert (
        rules({"args": [{"key": "sql", "contains": "drop"}], "action": "deny"}).decide("run", deep).action
        == "deny"
    )


def test_cached_names_do_not_cache_argument_results() -> None:
    """The same tool with different arguments gets different verdicts."""
    p = rules({"tool": "query", "args": [{"key": "sql", "contains": "drop"}], "action": "deny"})
    assert [p.decide("query", {"sql": s}).action for s in ("drop x", "select 1", "DROP y")] == [
        "deny",
        "allow",
        "deny",
    ]


# --- annotations -----------------------------------------------------------------------------


def annotated(trust: bool) -> Policy:
    """A server whose rules allow read-only tools and deny destructive ones."""
    return policy(
        {
            "global": {"default_action": "block"},
            "servers": {
                "s": {
                    "trust_annotations": trust,
                    "rules": [
                        {"name": "read-only", "annotations": {"readOnlyHint": True}, "action": "allow"},
                        {"name": "destroys", "annotations": DESTRUCTIVE, "action": "deny"},
                    ],
                }
            },
        },
        "s",
    )


def test_trusted_annotations_decide() -> None:
    """With trust_annotations, the server's hints pick the rule."""
    p = annotated(trust=True)
    assert p.decide("peek", {}, {"readOnlyHint": True}).rule == "servers.s.rules[0] 'read-only'"
    assert p.decide("wipe", {}, {"readOnlyHint": False, "destructiveHint": True}).action == "deny"
    assert p.decide("tidy", {}, {"readOnlyHint": False, "destructiveHint": False}).action == "approve"


def test_untrusted_annotations_count_as_unannotated() -> None:
    """Without trust a read-only claim is ignored: the spec defaults make the tool destructive."""
    p = annotated(trust=False)
    assert p.decide("peek", {}, {"readOnlyHint": True}).rule == "servers.s.rules[1] 'destroys'"


def test_unlisted_tool_counts_as_unannotated() -> None:
    """A tool never seen in tools/list (annotations None) gets the spec defaults, even when trusted."""
    p = annotated(trust=True)
    assert p.decide("peek", {}, None).action == "deny"
    assert p.decide("peek", {}, {}).action == "deny"  # listed, but no hints: defaults again
    assert p.decide("peek", {}, {"readOnlyHint": "yes"}).action == "deny"  # not a boolean: ignored


# --- explain ---------------------------------------------------------------------------------


def test_explain_names_the_deciding_rule() -> None:
    """explain lists the steps tried and ends with the rule that decided."""
    p = load_policy(str(ROOT / "config.example.json"), "stripe")
    lines = p.explain("create_refund", {"amount": 150000})
    assert lines[0] == "tool name 'create_refund' is matched as 'create_refund'"
    assert lines[-2] == "servers.stripe.rules[0] 'big refunds (1,000.00 or more, in cents)': matches"
    assert lines[-1].startswith("decision: deny by servers.stripe.rules[0] 'big refunds")


def test_explain_walks_to_the_default() -> None:
    """When nothing matches, explain shows every rule, keyword and prefix step, then the default."""
    p = rules(
        {"tool": "x_*", "action": "deny"},
        {"args": [{"key": "a", "exists": True}], "action": "deny"},
        block_keywords=["rm"],
    )
    lines = p.explain("frob", {})
    assert "global.rules[0]: tool 'x_*' does not match" in lines
    assert any(
        line.startswith("global.rules[1]: args[0] (key 'a' exists True) does not hold") for line in lines
    )
    assert any(line.startswith("block_keywords: none of ['rm']") for line in lines)
    assert lines[-1].startswith("decision: allow by global.default_action:")


CASES: list[tuple[str, object, dict[str, object] | None]] = [
    ("get_balance", {}, None),
    ("get_data", {"sql": "DROP TABLE users"}, None),
    ("read_query", {"query": "drop table x"}, None),
    ("create_refund", {"amount": 150000}, None),
    ("create_refund", {"amount": 15}, None),
    ("apply_changes", {"options": {"dry_run": True}}, None),
    ("write_file", {"path": "/etc/passwd"}, None),
    ("send_email", {"to": ["a", "b"]}, None),
    ("reset_db", {}, None),
    ("peek", {}, {"readOnlyHint": True, "openWorldHint": False}),
    ("", {}, None),
    ("\u200b", {}, None),
    ("frob", None, None),
]


@pytest.mark.parametrize("server", [None, "stripe", "docs", "nowhere"])
@pytest.mark.parametrize(("tool", "arguments", "hints"), CASES)
def test_explain_agrees_with_decide(
    server: str | None, tool: str, arguments: object, hints: dict[str, object] | None
) -> None:
    """explain's last line is exactly decide's verdict, for every kind of step."""
    p = load_policy(str(ROOT / "config.example.json"), server)
    verdict = p.decide(tool, arguments, hints)
    assert (
        p.explain(tool, arguments, hints)[-1]
        == f"decision: {verdict.action} by {verdict.rule}: {verdict.reason}"
    )


# --- scale -------------------------------------------------------------------------------------


def test_a_hundred_rules_work() -> None:
    """A 100-rule policy compiles and decides correctly for every rule, repeatedly."""
    items: list[dict[str, Any]] = []
    for i in range(25):
        items += [
            {"name": f"exact {i}", "tool": f"tool_{i}", "action": "deny"},
            {
                "name": f"glob {i}",
                "tool": f"svc{i}_*",
                "args": [{"key": "mode", "equals": "hard"}],
                "action": "deny",
            },
            {
                "name": f"regex {i}",
                "tool_regex": f"^rx{i}_",
                "args": [{"path": "$.n", "regex": r"^\d{3,}"}],
                "action": "approve",
            },
            {"name": f"args {i}", "args": [{"key": f"k{i}", "contains": "bad"}], "action": "approve"},
        ]
    p = rules(*items)
    for _ in range(3):  # the second and third rounds run on cached names
        for i in range(25):
            assert p.decide(f"tool_{i}", {}).rule == f"global.rules[{4 * i}] 'exact {i}'"
            assert p.decide(f"svc{i}_x", {"mode": "HARD"}).rule == f"global.rules[{4 * i + 1}] 'glob {i}'"
            assert p.decide(f"svc{i}_x", {"mode": "soft"}).action == "allow"
            assert p.decide(f"rx{i}_y", {"n": 1000}).rule == f"global.rules[{4 * i + 2}] 'regex {i}'"
            assert (
                p.decide("other", {"deep": [{f"k{i}": "so BAD"}]}).rule
                == f"global.rules[{4 * i + 3}] 'args {i}'"
            )
        assert p.decide("other", {"k": "fine"}).action == "allow"


def test_example_config_is_a_complete_policy() -> None:
    """config.example.json compiles for every server section it defines."""
    cfg = load_config(ROOT / "config.example.json")
    for name in [None, *cfg.servers]:
        assert compile_policy(cfg, name).warnings == ()
    assert json.loads((ROOT / "config.example.json").read_text())["global"]["default_action"] == "block"


@pytest.mark.parametrize("amount", [150000, 1e16, 1.5e6, 150000.0])
def test_number_regex_sees_plain_digits_however_the_number_is_spelt(amount: float) -> None:
    """A regex on a number tests its plain decimal digits, so 1e16 cannot slip past '^\\d{6,}'."""
    cfg = {
        "global": {
            "default_action": "allow",
            "rules": [{"tool": "refund", "args": [{"key": "amount", "regex": "^\\d{6,}"}], "action": "deny"}],
        }
    }
    policy = compile_policy(PolicyFile.model_validate(cfg), None)
    assert policy.decide("refund", {"amount": amount}).action == "deny"
    assert policy.decide("refund", {"amount": 99.5}).action == "allow"


def test_a_condition_shared_by_rules_is_tested_once_and_never_confused_with_a_near_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Identical conditions under several rules give one answer per call; near twins stay apart."""
    from daemon import conditions as policy_module

    tested: list[str] = []
    real = policy_module.Condition.holds

    def counting(cond: Any, args: Any) -> bool:
        tested.append(cond.test)
        return real(cond, args)

    monkeypatch.setattr(policy_module.Condition, "holds", counting)
    pol = rules(
        {"tool": "pay", "args": [{"key": "amount", "equals": "1"}], "action": "deny"},
        {"tool": "pay", "args": [{"key": "amount", "regex": "^9"}], "action": "deny"},
        {"tool": "pay", "args": [{"key": "amount", "equals": 1}], "action": "approve"},
        {
            "tool": "pay",
            "args": [{"key": "amount", "equals": 1}, {"key": "note", "exists": True}],
            "action": "deny",
        },
        {"tool": "*", "args": [{"key": "amount", "equals": 2}], "action": "deny"},
        {
            "tool": "pay",
            "args": [{"key": "amount", "equals": 2}, {"path": "$.amount", "equals": 2}],
            "action": "approve",
        },
    )
    assert pol.decide("pay", {"amount": 1}).rule == "global.rules[2]"  # not the string "1" nor a regex
    assert pol.decide("pay", {"amount": 1, "note": "x"}).rule == "global.rules[2]"  # first match wins
    assert pol.decide("pay", {"amount": 99}).rule == "global.rules[1]"
    tested.clear()
    assert pol.decide("pay", {"amount": 2, "note": "x"}).rule == "global.rules[4]"
    assert len(tested) == len(set(tested)) == 4  # rules 2 and 3 share "equals 1": tested once
    assert pol.decide("refund", {"amount": 3}).action == pol.decide("refund", {}).action


def test_which_rules_apply_is_remembered_by_the_tested_keys_a_call_has() -> None:
    """Rules that test an absent key are skipped, remembered per set of tested keys present:
    a call that has a key another call of the same tool lacked is still judged by its rules,
    keys no rule tests do not grow the memo, and a top-level path needs its key at the top."""
    pol = rules(
        {"tool": "run", "args": [{"key": "sql", "contains": "drop"}], "action": "deny"},
        {"tool": "run", "args": [{"path": "$.mode", "equals": "hard"}], "action": "approve"},
    )
    for _ in range(2):
        assert pol.decide("run", {"q": 1}).action == "allow"
        assert pol.decide("run", {"sql": "DROP table t"}).action == "deny"
        assert pol.decide("run", {"nested": {"sql": "drop it"}}).action == "deny"  # a key anywhere
        assert pol.decide("run", {"nested": {"mode": "hard"}}).action == "allow"  # $.mode: the top only
        assert pol.decide("run", {"mode": "hard", "sql": "ok"}).action == "approve"
    for i in range(100):
        assert pol.decide("run", {f"k{i}": 1}).action == "allow"
    assert len(pol._applicable) == 3  # none of the tested keys, sql, sql with mode at the top
    anytool = rules(*({"args": [{"key": f"k{i}", "equals": "x"}], "action": "deny"} for i in range(12)))
    for i in range(10_000):  # an agent cycling tool names and key sets only costs itself speed
        assert anytool.decide(f"tool{i}", {f"k{j}": 1 for j in range(12) if i >> j & 1}).action == "allow"
        assert len(anytool._applicable) <= 4096
