"""A decoy action cannot repaint the text console: what a real terminal shows, through tmux.

The agent pauses a real payment of 5000, then a decoy whose tool name and arguments carry cursor
movement and line-erase escapes written to overwrite the payment's lines with ``amount 5``.
``firewall-console pending`` and ``log`` run in a real terminal (tmux), and the screen is read back.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Daemon, fixture_shim
from helpers.wire import Peer, call

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

UP, ERASE = "\x1b[1A", "\x1b[2K"
#: Moves up over the lines printed before it and writes a harmless-looking payment there.
DECOY_NAME = "delete_x" + (UP + ERASE) * 6 + '\r  arguments: {"amount": 5, "to": "acct-1"}\x1b[8m'
DECOY_ARGUMENTS = {"note": "\x1b[2J\x1b[H" + "\u202e" + "000,5 tnuoma" + "\u009b" + "31m"}


def screen(daemon: Daemon, tmp_path: Path, *args: str) -> str:
    """What a 200x80 terminal shows after ``firewall-console ARGS`` ran in it."""
    label = f"{tmp_path.name}-{args[0]}"
    done = tmp_path / f"done-{args[0]}"
    command = shlex.join([sys.executable, "-m", "console", "--socket", daemon.socket, *args])
    env = {**daemon.env, "TERM": "xterm-256color"}
    server = ["tmux", "-L", f"fw-{label}", "-f", "/dev/null"]
    subprocess.run(
        [*server, "new-session", "-d", "-x", "200", "-y", "80", f"{command}; touch {done}; sleep 60"],
        env=env,
        check=True,
        timeout=30,
    )
    try:
        deadline = time.monotonic() + 30
        while not done.exists():
            assert time.monotonic() < deadline, "the console did not finish"
            time.sleep(0.05)
        time.sleep(0.2)  # let tmux draw the last bytes (what is asserted does not depend on it)
        return subprocess.run(
            [*server, "capture-pane", "-p", "-J"], env=env, capture_output=True, text=True, check=True
        ).stdout
    finally:
        subprocess.run([*server, "kill-server"], env=env, capture_output=True, timeout=30)


def test_decoy_cannot_repaint_the_pending_listing(daemon: Daemon, tmp_path: Path) -> None:
    with Peer(fixture_shim(tmp_path / "fx"), daemon.env) as peer:
        real = peer.ask(call(1, "transfer_funds", {"amount": 5000, "to": "acct-9"}))
        decoy = peer.ask(call(2, DECOY_NAME, DECOY_ARGUMENTS))
        assert "PAUSED_FOR_APPROVAL" in real["result"]["content"][0]["text"]
        assert "PAUSED_FOR_APPROVAL" in decoy["result"]["content"][0]["text"]
        actions = daemon.pending()
        (payment,) = [a for a in actions if a["tool"] == "transfer_funds"]
        shown = screen(daemon, tmp_path, "pending")
        log = screen(daemon, tmp_path, "log")
        as_json = json.loads(daemon.console("pending", "--json").stdout)
        peer.close()
    lines = shown.splitlines()
    (head,) = [i for i, line in enumerate(lines) if line.startswith(payment["action_id"])]
    assert payment["code"] in lines[head + 1]
    assert lines[head + 3] == '  arguments: {"amount": 5000, "to": "acct-9"}'
    # The decoy's payload is on the decoy's own line, spelt out, not drawn over the payment's.
    (decoy_line,) = [
        line for line in lines if line.startswith(next(a["action_id"] for a in actions if a is not payment))
    ]
    assert decoy_line.startswith(f"{decoy_line.split()[0]}  delete_x\\u001b[1A\\u001b[2K")
    assert [line for line in lines if line.startswith("  arguments:") and '"amount": 5,' in line] == []
    assert "\\u001b[1A\\u001b[2K" in shown and "\\u202e" in shown and "\\u009b" in shown
    assert "\\u001b[1A" in log and "transfer_funds" in log
    # --json stays exact: the names and arguments parse back to exactly what the agent sent.
    assert {a["tool"] for a in as_json["actions"]} == {"transfer_funds", DECOY_NAME}
    (raw,) = [a for a in as_json["actions"] if a["tool"] == DECOY_NAME]
    assert raw["arguments"] == DECOY_ARGUMENTS


def test_json_output_puts_no_control_character_on_the_terminal(daemon: Daemon, tmp_path: Path) -> None:
    with Peer(fixture_shim(tmp_path / "fx"), daemon.env) as peer:
        peer.ask(call(2, DECOY_NAME, {**DECOY_ARGUMENTS, "astral": "\U000e0041\U0001f600"}))
        out = daemon.console("pending", "--json").stdout
        peer.close()
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in out)
    (action,) = json.loads(out)["actions"]
    assert action["arguments"]["astral"] == "\U000e0041\U0001f600"
