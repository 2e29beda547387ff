"""Evasion in names and values, end to end: the real shim, the real firewalld, the scripted server.

Names and argument values are matched after NFKC, case folding, removal of invisible characters and a
fold of look-alike letters, however the agent spells or escapes them; a call that matches is paused or
denied, and nothing of it reaches the server. A name the server never listed inherits nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, shim_command
from helpers.fidelity import recorded, scripted_command, write_policy
from helpers.wire import Peer, call, initialize, jline

POLICY: dict[str, Any] = {
    "global": {
        "allow_prefixes": [],
        "block_keywords": ["delete"],
        "default_action": "allow",
        "rules": [{"name": "no drops", "args": [{"key": "sql", "contains": "drop"}], "action": "deny"}],
    }
}
NAMES = [
    "DELETE_thing",
    "Delete_Thing",
    "ｄｅｌｅｔｅ_thing",
    "de\u200blete_thing",
    "dеlete_thing",
    "del\u00adete_thing",
]
VALUES: list[Any] = [
    {"sql": "DROP table users"},
    {"sql": "ｄｒｏｐ table users"},
    {"sql": "dr\u200bop table users"},
    {"sql": "drоp table users"},  # Cyrillic о
    {"outer": {"list": [{"sql": "Drop table users"}]}},  # the key at any depth
]


@pytest.fixture(scope="module")
def session(fdaemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Path]]:
    """One agent session behind the shim with the evasion policy."""
    work = tmp_path_factory.mktemp("evasion")
    policy = write_policy(work, "policy", POLICY)
    record = work / "record"
    peer = Peer(shim_command(scripted_command(record, work / "fx"), config=policy), fdaemon.env)
    peer.ask(initialize(0))
    yield peer, record
    peer.close()


def text_of(reply: dict[str, Any]) -> str:
    """The text of a tools/call result."""
    return str(reply["result"]["content"][0]["text"])


@pytest.mark.parametrize("name", NAMES)
def test_disguised_names_are_paused(session: tuple[Peer, Path], name: str) -> None:
    """Case, full-width, zero-width, soft hyphen and Cyrillic look-alikes of a blocked word: paused."""
    peer, record = session
    before = len(recorded(record))
    reply = peer.ask(call(100 + NAMES.index(name), name, {"id": 1}))
    assert "PAUSED_FOR_APPROVAL" in text_of(reply)
    assert len(recorded(record)) == before


@pytest.mark.parametrize("arguments", VALUES, ids=[str(i) for i in range(len(VALUES))])
def test_disguised_values_are_denied(session: tuple[Peer, Path], arguments: dict[str, Any]) -> None:
    """A denied keyword in an argument value, however spelt and wherever nested: denied, never forwarded."""
    peer, record = session
    before = len(recorded(record))
    reply = peer.ask(call(200 + VALUES.index(arguments), "echo", arguments))
    assert reply["result"]["isError"] is True and "Blocked" in text_of(reply)
    assert len(recorded(record)) == before


def test_escaped_spelling_is_the_same_call(session: tuple[Peer, Path]) -> None:
    """JSON escapes in the name and value are decoded before judging, as every parser decodes them."""
    peer, record = session
    line = b'{"jsonrpc":"2.0","id":300,"method":"tools/call",'
    line += b'"params":{"name":"\\u0065cho","arguments":{"sql":"\\u0044ROP x"}}}'
    peer.send(line)
    reply = peer.response(300)[0]
    assert "Blocked" in text_of(reply)
    assert line not in recorded(record)


def test_honest_call_still_passes(session: tuple[Peer, Path]) -> None:
    """After all that, an honest call passes, and reaches the server as sent."""
    peer, record = session
    sent = call(400, "echo", {"sql": "select 1"})
    assert json.loads(text_of(peer.ask(sent)))["arguments"] == {"sql": "select 1"}
    assert recorded(record)[-1] == jline(sent)
