"""The console in a real terminal: ``firewall-console`` under tmux, read back with ``capture-pane``.

This is the one test that sees what a person sees: the real entry point, a real pty, real key
presses. A private tmux server (``-L``) keeps it away from any tmux the developer runs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from conftest import ROOT, Daemon, fixture_shim
from helpers.mcp_agent import connect, tool_text

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

WIDTH, HEIGHT = 120, 40
EXITED = "firewall-console exited with status"


class Tmux:
    """A private tmux server with one session running one command."""

    def __init__(self) -> None:
        self.base = ["tmux", "-L", f"fw-console-{uuid.uuid4().hex[:10]}", "-f", "/dev/null"]

    def run(self, *args: str) -> str:
        """Run a tmux command against this server; returns its stdout."""
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        """Start ``command`` in a detached WIDTHxHEIGHT session; its exit status is printed when it ends.

        (tmux itself can take seconds to notice that a pane's process has exited, so the test reads
        the status line from the screen instead of asking tmux.)
        """
        line = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command])
        line += f'; echo "{EXITED} $?"'
        size = ("-x", str(WIDTH), "-y", str(HEIGHT))
        keep = (";", "set-option", "-w", "-t", "console", "remain-on-exit", "on")
        # One tmux call, so the pane is kept even if the command dies at once.
        self.run("new-session", "-d", "-s", "console", *size, "-c", str(ROOT), line, *keep)

    def screen(self, *, history: bool = False) -> str:
        """The visible text of the pane (and with ``history``, the lines scrolled out of it)."""
        return self.run("capture-pane", "-p", "-t", "console", *(("-S", "-") if history else ()))

    def keys(self, *keys: str) -> None:
        """Type keys into the pane."""
        self.run("send-keys", "-t", "console", *keys)

    def exit_status(self) -> str | None:
        """The command's exit status once it has ended, else None."""
        found = re.search(rf"{EXITED} (\d+)", self.screen(history=True))
        return found.group(1) if found else None

    def kill(self) -> None:
        """Stop the server and everything in it, and remove its socket (tmux leaves it behind)."""
        where = subprocess.run(
            [*self.base, "display-message", "-p", "#{socket_path}"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10, check=False)
        if where:
            Path(where).unlink(missing_ok=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """A private tmux server, killed after the test."""
    server = Tmux()
    try:
        yield server
    finally:
        server.kill()


async def wait_for(tmux: Tmux, predicate: Callable[[str], bool], what: str, limit: float = 20.0) -> str:
    """Poll the pane until ``predicate(screen)`` holds; fail with the last screen after ``limit`` s."""
    screen = ""
    try:
        with anyio.fail_after(limit):
            while True:  # tmux has no "screen changed" event to wait on: poll it
                screen = tmux.screen()
                if predicate(screen):
                    break
                await anyio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"never saw {what} on the console; the screen was:\n{screen}")
    return screen


async def test_console_under_tmux(daemon: Daemon, tmux: Tmux, tmp_path: Path) -> None:
    """The code and tool of a paused call appear on the terminal; `d` denies it; `q` quits cleanly."""
    env = {**daemon.env, "COLORTERM": "truecolor"}
    tmux.start([sys.executable, "-m", "console", "--socket", daemon.socket], env)
    await wait_for(
        tmux, lambda s: "connected to" in s and "Nothing is waiting" in s, "the connected empty state"
    )

    async with connect(fixture_shim(tmp_path / "fx"), mode="auto", env=daemon.env) as agent:
        paused = json.loads(tool_text(await agent.call_tool("delete_user", {"id": 77})))
        (action,) = daemon.pending()
        assert action["action_id"] == paused["action_id"]
        screen = await wait_for(
            tmux, lambda s: "delete_user" in s and f"Code {action['code']}" in s, "the tool and its code"
        )
        assert "approve delete_user" in screen
        assert '"id": 77' in screen

        tmux.keys("d")
        screen = await wait_for(tmux, lambda s: "Nothing is waiting" in s, "the action leave the list")
        assert action["code"] not in screen
        denied = await agent.call_tool("firewall_confirm", {"otp": action["code"]})
    assert denied.is_error and "denied" in tool_text(denied)

    tmux.keys("q")
    await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the console exit")
    assert tmux.exit_status() == "0"
    assert "Traceback" not in tmux.screen(history=True)


async def test_console_under_tmux_without_daemon(home: Path, tmux: Tmux) -> None:
    """No daemon: the terminal shows why and keeps retrying; no traceback, and `q` still quits."""
    socket = Daemon(home).socket
    env = {**Daemon(home).env, "COLORTERM": "truecolor"}
    tmux.start([sys.executable, "-m", "console", "--socket", socket], env)
    screen = await wait_for(tmux, lambda s: "not reachable" in s and "attempt 2" in s, "the retrying state")
    assert "Traceback" not in screen
    tmux.keys("q")
    await wait_for(tmux, lambda _: tmux.exit_status() is not None, "the console exit")
    assert tmux.exit_status() == "0"
    assert "Traceback" not in tmux.screen(history=True)
