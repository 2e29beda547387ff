"""A huge allowed call is judged off the daemon's event loop: other chats are decided meanwhile.

Judging tens of MB of small strings (parsing, the self-protection walk, the policy) takes the daemon
seconds of CPU. The test waits until the daemon is busy with such a call (by its CPU time: a
readiness wait, not a timing assertion), then makes a small call in another chat, and checks the
order in which the audit log recorded the two decisions: the small call's first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from conftest import Daemon, fixture_shim
from helpers.mcp_agent import connect, tool_text

STRINGS = 600_000  # about 5 MB of JSON, and seconds of the daemon's CPU to judge


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_other_chats_are_decided_while_a_huge_call_is_judged(daemon: Daemon, tmp_path: Path) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    payload = {"items": [f"w{i}" for i in range(STRINGS)]}
    async with (
        connect(fixture_shim(tmp_path / "a"), mode="legacy", env=daemon.env) as big,
        connect(fixture_shim(tmp_path / "b"), mode="legacy", env=daemon.env) as small,
    ):
        await small.call_tool("read_note", {"name": "warm-up"})
        results: dict[str, str] = {}

        async def huge() -> None:
            results["huge"] = tool_text(await big.call_tool("get_echo", {"payload": payload}))

        async with anyio.create_task_group() as tg:
            before = cpu_seconds(pid)
            tg.start_soon(huge)
            deadline = time.monotonic() + 60
            while cpu_seconds(pid) - before < 0.5:  # the daemon has started on the huge call
                assert time.monotonic() < deadline, "the daemon never started judging the huge call"
                await anyio.sleep(0.02)
            results["small"] = tool_text(await small.call_tool("read_note", {"name": "meanwhile"}))
        assert results["small"] == "note:meanwhile"
        assert results["huge"].startswith('{"items": ["w0"')
    rows = daemon.audit()
    (small_row,) = [r for r in rows if r["event"] == "decision" and "meanwhile" in (r["detail"] or "")]
    (huge_row,) = [r for r in rows if r["event"] == "decision" and r["tool"] == "get_echo"]
    assert small_row["decision"] == huge_row["decision"] == "allow"
    assert small_row["id"] < huge_row["id"], "the small call waited for the huge one to be judged"
