"""A private tmux server for tests that must see what a person sees in a real terminal."""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]

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
