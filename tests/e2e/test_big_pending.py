"""Big paused calls cannot blind the console or fill the disk: listings are bounded, arguments are
fetched on demand, and the bytes held for paused calls have a limit (through the real shim,
daemon and console)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from conftest import Daemon, shim_command, write_config
from fixtures.big_server import blob_text
from helpers.mcp_agent import FIXTURES
from helpers.wire import Peer, call

BIG_SERVER = [sys.executable, str(FIXTURES / "big_server.py")]
PAUSE_DELETES = {"global": {"allow_prefixes": [], "block_keywords": ["delete"], "default_action": "allow"}}


def paused_or_refused(answer: dict[str, Any]) -> tuple[str | None, str]:
    """The action id of a paused call (None if it was refused), and the text the agent got."""
    text = answer["result"]["content"][0]["text"]
    if "PAUSED_FOR_APPROVAL" in text:
        return json.loads(text)["action_id"], text
    return None, text


def shown_sha256(arguments: dict[str, Any]) -> str:
    """The hash a listing gives for these arguments (their JSON text as the daemon holds it)."""
    return hashlib.sha256(json.dumps(arguments, ensure_ascii=False).encode()).hexdigest()


def test_three_forty_megabyte_pauses_stay_listable(daemon: Daemon, tmp_path: Path) -> None:
    """Three paused calls of ~40 MB each: `pending --json` lists all three cut (size and hash), `show`
    gives each one's full arguments with that hash, and `deny` works on each."""
    config = write_config(tmp_path / "policy.json", PAUSE_DELETES)
    pad = blob_text(36_000_000)  # 42 MB of UTF-8: three of them are over the 96 MiB frame limit
    sent: dict[str, dict[str, Any]] = {}
    # Judging 42 MB (NFKC and all) takes the daemon a few seconds on a busy host: a deadline that
    # passes here would test the host, not the listing.
    command = shim_command(BIG_SERVER, config=config, extra=("--decision-timeout", "25"))
    with Peer(command, daemon.env) as peer:
        for n in range(3):
            arguments = {"size": 10, "n": n, "pad": pad}
            action_id, text = paused_or_refused(peer.ask(call(n + 1, "delete_blob", arguments)))
            assert action_id is not None, text
            sent[action_id] = arguments
        listing = json.loads(daemon.console("pending", "--json").stdout)
        listed = {a["action_id"]: a for a in listing["actions"]}
        assert set(listed) == set(sent)
        for action_id, arguments in sent.items():
            action = listed[action_id]
            assert action["arguments_cut"] and action["arguments"] is None
            assert action["arguments_bytes"] == len(json.dumps(arguments, ensure_ascii=False).encode())
            assert action["arguments_sha256"] == shown_sha256(arguments)
            assert len(action["arguments_preview"]) <= 2048
        assert listing["paused_bytes"] >= 3 * 40_000_000

        for action_id, arguments in sent.items():
            shown = json.loads(daemon.console("show", action_id, "--json").stdout)
            assert shown["arguments_sha256"] == listed[action_id]["arguments_sha256"]
            assert shown["arguments"] == arguments
            del shown
            assert f"denied {action_id} (delete_blob)" in daemon.console("deny", action_id).stdout
        listing = json.loads(daemon.console("pending", "--json").stdout)
        peer.close()
    assert listing["actions"] == [] and listing["paused_bytes"] == 0


def test_paused_bytes_are_bounded_and_reported(home: Path, tmp_path: Path) -> None:
    """Past FIREWALLD_MAX_PAUSED_BYTES a new pause is denied with a reason that says so; the total is
    in the listing; once a paused call is denied its bytes are free again."""
    daemon = Daemon(home)
    daemon.env["FIREWALLD_MAX_PAUSED_BYTES"] = "1000000"
    daemon.start()
    try:
        config = write_config(tmp_path / "policy.json", PAUSE_DELETES)
        with Peer(shim_command(BIG_SERVER, config=config), daemon.env) as peer:
            first, _ = paused_or_refused(peer.ask(call(1, "delete_blob", {"pad": "a" * 600_000})))
            assert first is not None
            refused, text = paused_or_refused(peer.ask(call(2, "delete_blob", {"pad": "b" * 600_000})))
            assert refused is None
            assert "not paused and will not run" in text and "FIREWALLD_MAX_PAUSED_BYTES" in text
            listing = json.loads(daemon.console("pending", "--json").stdout)
            assert [a["action_id"] for a in listing["actions"]] == [first]
            assert 600_000 < listing["paused_bytes"] < 1_000_000 == listing["max_paused_bytes"]
            assert "paused arguments held: 600," in daemon.console("pending").stdout
            refusal = next(r for r in daemon.audit() if r["event"] == "decision" and r["decision"] == "deny")
            assert refusal["rule"] == "limit"

            daemon.console("deny", first)
            again, text = paused_or_refused(peer.ask(call(3, "delete_blob", {"pad": "c" * 600_000})))
            assert again is not None, text
            peer.close()
    finally:
        daemon.stop()
