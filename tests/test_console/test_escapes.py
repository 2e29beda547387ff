"""Terminal escapes from agents and servers reach no screen: `firewall-console pending` in a real tmux.

A hostile server lists a tool whose name moves the cursor up and rewrites the arguments line of
the action printed above it (a payment of 5000 would read as one of 5). Through the real shim and
daemon, both calls are paused; `firewall-console pending` runs in a real terminal, and the screen
read back with ``capture-pane`` must show the real arguments next to the real code, and the
decoy's escapes as visible text.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import Daemon, shim_command
from fixtures.escape_server import DECOY, FORGED
from helpers.mcp_agent import FIXTURES
from helpers.tmux import Tmux, wait_for
from helpers.wire import Peer, call, request

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ESCAPE_SERVER = [sys.executable, str(FIXTURES / "escape_server.py")]


async def test_decoy_escapes_cannot_rewrite_another_action(
    daemon: Daemon, tmux: Tmux, tmp_path: Path
) -> None:
    """The decoy's cursor movements show as text; the real payment's line still says 5000 under its code."""
    with Peer(shim_command(ESCAPE_SERVER), daemon.env) as peer:
        listed = peer.ask(request(1, "tools/list"))
        assert DECOY in [t["name"] for t in listed["result"]["tools"]]
        # The decoy first: listings are newest first, so it is printed under the real payment.
        decoy = peer.ask(call(2, DECOY, {"amount": 5, "note": "\x1b[1A\u202e\x9b2J"}))
        real = peer.ask(call(3, "transfer_funds", {"amount": 5000, "to": "acct-real"}))
        assert "PAUSED_FOR_APPROVAL" in decoy["result"]["content"][0]["text"]
        real_id = json.loads(real["result"]["content"][0]["text"])["action_id"]
        by_id = {a["action_id"]: a for a in daemon.pending()}
        assert {a["tool"] for a in by_id.values()} == {DECOY, "transfer_funds"}  # --json stays exact
        code = by_id[real_id]["code"]

        tmux.start([sys.executable, "-m", "console", "--socket", daemon.socket, "pending"], daemon.env)
        await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the command's end")
        lines = tmux.screen(history=True).splitlines()
        assert tmux.exit_status() == "0"
        peer.close()

    (at,) = [i for i, line in enumerate(lines) if f"code:      {code}" in line]
    screen = "\n".join(lines)
    assert lines[at - 1].startswith(f"{real_id}  transfer_funds"), screen
    assert lines[at + 2] == '  arguments: {"amount": 5000, "to": "acct-real"}', screen
    assert FORGED not in lines, screen
    assert "\\u001b[2A\\u000d\\u001b[2K" in screen  # the decoy's name, spelt out
    assert '"note": "\\u001b[1A\\u202e\\u009b2J"' in screen  # its arguments too
