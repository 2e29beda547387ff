"""``approve_via_elicitation``: off by default, per server section, optionally per client name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigError, PolicyFile, load_config
from daemon.policy import Policy, compile_policy


def policy(servers: dict[str, Any], server: str | None) -> Policy:
    return compile_policy(PolicyFile.model_validate({"global": {}, "servers": servers}), server)


def test_off_by_default() -> None:
    assert not policy({"x": {}}, "x").approves_via_elicitation("claude-code")
    assert not policy({}, None).approves_via_elicitation("claude-code")
    bundled = compile_policy(load_config(None), None)
    assert not bundled.approves_via_elicitation("mcp")


def test_true_applies_to_every_client_of_that_server_only() -> None:
    servers = {"x": {"approve_via_elicitation": True}, "y": {}}
    assert policy(servers, "x").approves_via_elicitation("") and policy(
        servers, "x"
    ).approves_via_elicitation("a")
    assert not policy(servers, "y").approves_via_elicitation("a")
    assert not policy(servers, "z").approves_via_elicitation("a")  # a server not in the file: global only


def test_a_list_names_the_clients_in_any_case() -> None:
    on = policy({"x": {"approve_via_elicitation": ["Claude-Code", "desk client"]}}, "x")
    assert on.approves_via_elicitation("claude-code") and on.approves_via_elicitation("DESK CLIENT")
    assert not on.approves_via_elicitation("claude-code-ci") and not on.approves_via_elicitation("")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "an empty list of clients is not allowed"),
        ([" "], "client names must not be empty"),
        ("yes", "valid boolean"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, value: Any, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"global": {}, "servers": {"x": {"approve_via_elicitation": value}}}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(
        "servers.x.approve_via_elicitation" in line and message in line for line in caught.value.problems
    )


def test_not_a_global_key(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"global": {"approve_via_elicitation": True}}))
    with pytest.raises(ConfigError, match="global.approve_via_elicitation: unknown key"):
        load_config(path)
