"""An allowed tool that can read the user's files cannot get a code, nor touch the firewall's own files.

The agent drives ``@modelcontextprotocol/server-filesystem`` rooted at the user's home, with the
default policy (its read tools are allowed), while an action waits for approval. Whatever it reads,
the code is not there to find (codes live only in the daemon's memory), and every call that names
the firewall's state, configuration or socket directory, however spelt, is denied by the built-in
rule before the policy is asked.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Daemon, shim_command
from e2e.test_reference_servers import filesystem_server
from helpers.mcp_agent import connect, tool_text

pytestmark = pytest.mark.npm


def spellings(home: Path, state: Path) -> list[str]:
    """Ways to name the state directory (or a file in it) that a filesystem server would accept."""
    relative = state.relative_to(home)
    return [
        str(state),
        str(state / "firewall.db"),
        f"{home}/./{relative}/../{state.name}/firewall.db",
        f"{home}/{relative.parts[0]}//{'/'.join(relative.parts[1:])}",
        str(relative),  # relative to the server's root
        "~/" + str(relative),
        f"file://{state}/firewall.db",
        str(home / "innocent-link" / "firewall.db"),  # a symlink into the state directory
        str(home / "notes" / ".." / relative),
        str(home / "to-other" / ".." / state.name / "firewall.db"),  # `..` after a link into the parent
    ]


async def test_filesystem_server_rooted_at_home_gets_no_code(daemon: Daemon) -> None:
    home = daemon.home
    (home / "notes").mkdir()
    (home / "notes" / "todo.txt").write_text("buy milk")
    (home / "innocent-link").symlink_to(daemon.state_dir)
    (daemon.state_dir.parent / "other").mkdir()
    (home / "to-other").symlink_to(daemon.state_dir.parent / "other")
    async with connect(shim_command(filesystem_server(home)), mode="legacy", env=daemon.env) as agent:
        paused = await agent.call_tool("write_file", {"path": str(home / "notes" / "x.txt"), "content": "x"})
        assert "PAUSED_FOR_APPROVAL" in tool_text(paused)
        (action,) = daemon.pending()
        code = action["code"]

        # The user's own files are still readable: the rule is not a blanket refusal.
        todo = await agent.call_tool("read_text_file", {"path": str(home / "notes" / "todo.txt")})
        assert tool_text(todo) == "buy milk"

        for path in spellings(home, daemon.state_dir):
            for tool, arguments in (
                ("list_directory", {"path": path}),
                ("read_text_file", {"path": path}),
                ("read_media_file", {"path": path}),
                ("get_file_info", {"path": path}),
                ("read_multiple_files", {"paths": [str(home / "notes" / "todo.txt"), path]}),
            ):
                denied = await agent.call_tool(tool, arguments)
                text = tool_text(denied)
                assert denied.is_error and "self-protection" in text, (tool, path, text)
                assert code not in text
        # A search from the home directory names files, never their contents.
        found = await agent.call_tool("search_files", {"path": str(home), "pattern": "firewall"})
        assert code not in tool_text(found)
        # The same files read without the firewall in the way (as any process of the user could):
        # the code is in none of them, and the database holds nothing derived from it.
        for place in (daemon.state_dir, home / ".config", Path(daemon.socket).parent):
            for file in place.rglob("*") if place.exists() else ():
                if file.is_file() and not file.is_socket():
                    assert code.encode() not in file.read_bytes(), file
        with sqlite3.connect(daemon.state_dir / "firewall.db") as db:
            db.row_factory = sqlite3.Row
            (row,) = db.execute("SELECT * FROM pending WHERE action_id = ?", (action["action_id"],))
            # No MAC, no sealed copy: the only bytes kept are the frozen call itself.
            assert [k for k in row.keys() if isinstance(row[k], bytes) and row[k]] == ["params"]
            assert all(code not in str(row[k]) for k in row.keys())
        still = daemon.pending()
        # Nothing of the above disturbed the action (the search may wait for approval too: that's policy).
        assert [a["code"] for a in still if a["action_id"] == action["action_id"]] == [code]
    rules = {r["rule"] for r in daemon.audit(limit=1000) if r["decision"] == "deny"}
    assert rules == {"builtin.self_protection"}


def test_daemon_memory_is_closed_to_other_processes(daemon: Daemon) -> None:
    """The daemon is not dumpable: /proc/PID/mem and ptrace refuse other processes of the user."""
    assert daemon.proc is not None
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_DUMPABLE is Linux's")
    probe = (
        "import ctypes, os, sys\n"
        "from daemon.codes import make_undumpable\n"
        "assert make_undumpable()\n"
        "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"  # PR_GET_DUMPABLE
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "0", out.stderr
    # The running daemon did the same: its /proc entries belong to root, as the kernel does for a
    # non-dumpable process (visible as such only when the tests do not themselves run as root).
    if os.getuid() != 0:
        assert os.stat(f"/proc/{daemon.proc.pid}/mem").st_uid == 0
        with pytest.raises(PermissionError):
            Path(f"/proc/{daemon.proc.pid}/mem").open("rb").close()
    else:
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        assert "State:" in status and json.dumps(status)  # alive; root could read it anyway
