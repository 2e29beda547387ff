"""The bundled policy: its verdict on every tool of the reference servers and the fixture; its name rules."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.config import ServerSection, load_config
from daemon.policy import Policy, compile_policy, load_policy

RO = {"readOnlyHint": True, "openWorldHint": False}
RO_FULL = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}
WRITES = {"readOnlyHint": False, "destructiveHint": False, "openWorldHint": False}
DESTROYS = {"readOnlyHint": False, "destructiveHint": True, "openWorldHint": False}

#: The tools of @modelcontextprotocol/server-everything and server-filesystem (tests/node) and of
#: tests/fixtures/fixture_server.py with their readOnlyHint and destructiveHint as listed (the e2e
#: test test_default_policy_servers checks the names against the live servers); then the verdict
#: of the bundled policy, and with trust_annotations on for that server.
TOOLS: dict[str, list[tuple[str, dict[str, Any], str, str]]] = {
    "everything": [
        ("echo", RO_FULL, "allow", "allow"),
        ("get-annotated-message", RO_FULL, "allow", "allow"),
        ("get-env", RO_FULL, "allow", "allow"),
        ("get-resource-links", RO_FULL, "allow", "allow"),
        ("get-resource-reference", RO_FULL, "allow", "allow"),
        ("get-structured-content", RO_FULL, "allow", "allow"),
        ("get-sum", RO_FULL, "allow", "allow"),
        ("get-tiny-image", RO_FULL, "allow", "allow"),
        ("gzip-file-as-resource", {**WRITES, "openWorldHint": True}, "approve", "approve"),
        ("toggle-simulated-logging", WRITES, "approve", "approve"),
        ("toggle-subscriber-updates", WRITES, "approve", "approve"),
        ("trigger-long-running-operation", RO_FULL, "approve", "allow"),
        ("simulate-research-query", WRITES, "approve", "approve"),
    ],
    "filesystem": [
        ("read_file", RO, "allow", "allow"),
        ("read_text_file", RO, "allow", "allow"),
        ("read_media_file", RO, "allow", "allow"),
        ("read_multiple_files", RO, "allow", "allow"),
        ("write_file", DESTROYS, "approve", "approve"),
        ("edit_file", DESTROYS, "approve", "approve"),
        ("create_directory", WRITES, "approve", "approve"),
        ("list_directory", RO, "allow", "allow"),
        ("list_directory_with_sizes", RO, "allow", "allow"),
        ("directory_tree", RO, "approve", "allow"),
        ("move_file", DESTROYS, "approve", "approve"),
        ("search_files", RO, "allow", "allow"),
        ("get_file_info", RO, "allow", "allow"),
        ("list_allowed_directories", RO, "allow", "allow"),
    ],
    "fixture": [
        ("read_note", RO_FULL, "allow", "allow"),
        ("delete_user", DESTROYS, "approve", "approve"),
        ("transfer_funds", DESTROYS, "approve", "approve"),
        ("get_forecast", RO_FULL, "allow", "allow"),
        ("get_blob", RO_FULL, "allow", "allow"),
        ("get_slow", RO_FULL, "allow", "allow"),
        ("get_echo", RO_FULL, "allow", "allow"),
        ("execute_sql", DESTROYS, "approve", "approve"),
    ],
}
CASES = [(server, *tool) for server, tools in TOOLS.items() for tool in tools]


def trusting(server: str) -> Policy:
    """The bundled policy with a section for ``server`` that trusts its annotations."""
    cfg = load_config(None)
    cfg = cfg.model_copy(update={"servers": {**cfg.servers, server: ServerSection(trust_annotations=True)}})
    return compile_policy(cfg, server)


@pytest.mark.parametrize(("server", "tool", "hints", "plain", "trusted"), CASES)
def test_verdict_per_reference_tool(
    server: str, tool: str, hints: dict[str, Any], plain: str, trusted: str
) -> None:
    """Read tools run, writing ones pause: by name alone, and with the server's annotations trusted."""
    assert load_policy(None, server).decide(tool, {}, hints).action == plain
    assert trusting(server).decide(tool, {}, hints).action == trusted


def test_destructive_filesystem_tools_pause_even_when_trusted() -> None:
    """write_file, edit_file, move_file and create_directory never run unasked."""
    for policy in (load_policy(None, "filesystem"), trusting("filesystem")):
        for tool, hints, *_ in TOOLS["filesystem"]:
            if tool in ("write_file", "edit_file", "move_file", "create_directory"):
                assert policy.decide(tool, {"path": "/tmp/x"}, hints).action == "approve", tool


@pytest.mark.parametrize(
    "tool",
    [
        "get-sum",
        "getSum",
        "get.sum",
        "GET_SUM",
        "GetSum",
        "get",
        "listTools",
        "list",
        "read-file",
        "searchFiles",
        "fetch-url",
        "describe_table",
        "show-logs",
        "findUser",
        "view_page",
        "tree",
        "stat_file",
        "info",
        "lookupIp",
        "\uff47\uff45\uff54\uff33\uff55\uff4d",
    ],
)
def test_read_verbs_are_allowed_in_every_spelling(tool: str) -> None:
    """snake_case, kebab-case, camelCase, dotted, capitals, fullwidth and the bare verb all pass."""
    verdict = load_policy(None, None).decide(tool, {})
    assert (verdict.action, verdict.rule.split(" ")[0]) == ("allow", "global.allow_prefixes")


@pytest.mark.parametrize(
    "tool",
    [
        "get_and_delete",
        "getAndDelete",
        "get-and-delete",
        "read_then_drop",
        "list-and-remove",
        "fetchAndWrite",
        "search_and_destroy",
        "show-then-purge",
        "get_and_d\u00e9lete",
    ],
)
def test_a_destructive_word_beats_a_read_verb(tool: str) -> None:
    """A name with both a read verb and a destructive word needs approval, however it is spelt."""
    verdict = load_policy(None, None).decide(tool, {})
    assert (verdict.action, verdict.rule.split(" ")[0]) == ("approve", "global.block_keywords")


@pytest.mark.parametrize(
    "tool", ["getaway", "readiness_probe", "listen_socket", "shower_on", "statement_run"]
)
def test_a_read_verb_must_be_a_whole_word(tool: str) -> None:
    """'get_' does not allow getaway: the prefix is the first word, not the first letters."""
    assert load_policy(None, None).decide(tool, {}).action == "approve"


def test_trusted_hints_decide_only_what_they_declare() -> None:
    """A trusted server's explicit readOnlyHint allows and destructiveHint pauses; a left-out hint decides
    nothing, a keyword in the name still wins, and an untrusted server's hints count for nothing."""
    trusted, untrusted = trusting("s"), load_policy(None, "s")
    assert (
        trusted.decide("frobnicate", {}, {"readOnlyHint": True}).rule
        == "servers.s.trust_annotations readOnlyHint"
    )
    verdict = trusted.decide("get_token", {}, {"destructiveHint": True})
    assert (verdict.action, verdict.rule) == ("approve", "servers.s.trust_annotations destructiveHint")
    assert trusted.decide("get_token", {}, {}).action == "allow"  # nothing declared: the prefix decides
    assert trusted.decide("frobnicate", {}, {}).action == "approve"
    assert trusted.decide("frobnicate", {}, None).action == "approve"  # never listed
    assert trusted.decide("get_and_delete", {}, {"readOnlyHint": True}).rule.startswith(
        "global.block_keywords"
    )
    assert untrusted.decide("frobnicate", {}, {"readOnlyHint": True}).action == "approve"
    assert untrusted.decide("get_token", {}, {"destructiveHint": True}).action == "allow"


def test_explain_names_the_trust_step() -> None:
    """The dry run shows the trusted hint that decided, and the words a prefix matched."""
    lines = trusting("s").explain("directory_tree", {}, {"readOnlyHint": True})
    assert lines[-2] == "servers.s.trust_annotations readOnlyHint: declared by the trusted server"
    assert lines[-1].startswith("decision: allow by servers.s.trust_annotations readOnlyHint")
    lines = load_policy(None, None).explain("getSum", {})
    assert "global.allow_prefixes 'get_': starts the name (its words: 'get_sum')" in lines
