"""The link's wait for a daemon it started (shim.daemon_link), on the real event loop with a real
child process standing in for a daemon that fails at start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from daemon import protocol as p
from shim.daemon_link import DaemonLink
from shim.loop import EventLoop


def test_a_daemon_that_fails_late_in_its_start_ends_the_wait_then(tmp_path: Path) -> None:
    """A started daemon that exits non-zero after the request's own deadline (a busy host, seconds
    into its imports) makes the waiting request fail then, not at the end of the start allowance."""
    loop = EventLoop()
    link = DaemonLink(
        loop, str(tmp_path / "s.sock"), p.Hello(role=p.ROLE_SHIM), timeout=0.5, start_timeout=30.0
    )
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> None:  # as DaemonLink._spawn_daemon, with a stand-in that fails after 1.5 s
        if started:
            return
        started.append(subprocess.Popen(["sh", "-c", "sleep 1.5; exit 1"]))
        link._started = started[0]
        link._starting_until = time.monotonic() + link.start_timeout

    link._spawn_daemon = spawn  # type: ignore[method-assign]
    answers: list[tuple[p.Message | None, str, float]] = []
    began = time.monotonic()

    def done(message: p.Message | None, reason: str) -> None:
        answers.append((message, reason, time.monotonic() - began))
        loop.stop()

    link.start()
    link.request(lambda rid: p.StatusQuery(rid), done)
    loop.call_later(25.0, loop.stop)  # the allowance is 30 s: a stop here is the failure
    loop.run()
    link.close()
    assert answers, "the request was still waiting for the failed daemon"
    message, reason, _ = answers[0]
    assert message is None and "did not answer in time" in reason
