"""Shared fixtures: a scrubbed environment, a real firewalld on a temporary socket, and the shim command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.mcp_agent import fixture_command, minimal_env

ROOT = Path(__file__).resolve().parents[1]

#: Variables that would change where the firewall looks for things.
_SCRUB = ("FIREWALL_SOCKET", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "LISTEN_FDS", "LISTEN_PID")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop environment variables that would point the code under test somewhere else."""
    for name in list(os.environ):
        if name in _SCRUB or name.startswith("FIREWALLD_"):
            monkeypatch.delenv(name)


def wait_for_socket(path: str, proc: subprocess.Popen[bytes] | None = None, limit: float = 15.0) -> None:
    """Block until something accepts connections on ``path`` (a readiness wait, not a timing check)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"firewalld exited with {proc.returncode}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(path)
                return
            except OSError:
                time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {path}")


class Daemon:
    """A firewalld process of the test's own, with its socket and state under the test's HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.state_dir = home / ".local" / "state" / "mcp-action-firewall"
        self.env = minimal_env(home)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        # The same rule as shim, daemon and console use, fed the same minimal environment.
        from daemon.protocol import default_socket_path

        self.socket = default_socket_path(self.env)

    def start(self) -> None:
        """Start firewalld and wait until it accepts connections."""
        self._stderr = open(self.home / "firewalld.stderr", "ab")  # noqa: SIM115 - closed in _reap
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "-v"],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        wait_for_socket(self.socket, self.proc)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self._reap()
        return code

    def _reap(self) -> None:
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def log_text(self) -> str:
        """What the daemon wrote to stderr."""
        return (self.home / "firewalld.stderr").read_text(errors="replace")

    def kill9(self) -> None:
        """Kill the daemon without warning (a crash)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._reap()

    def console(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``firewall-console ARGS`` against this daemon."""
        result = subprocess.run(
            [sys.executable, "-m", "console", "--socket", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"firewall-console {' '.join(args)} failed: {result.stderr}")
        return result

    def pending(self) -> list[dict[str, Any]]:
        """The pending actions, as `firewall-console pending --json` prints them."""
        actions: list[dict[str, Any]] = json.loads(self.console("pending", "--json").stdout)["actions"]
        return actions

    def audit(self, limit: int = 200) -> list[dict[str, Any]]:
        """The audit log, newest first, as `firewall-console log --json` prints it."""
        rows: list[dict[str, Any]] = json.loads(self.console("log", "--json", "--limit", str(limit)).stdout)
        return rows


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh HOME for the test's daemon, shims and consoles."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def daemon(home: Path) -> Iterator[Daemon]:
    """A running firewalld under the test's HOME."""
    d = Daemon(home)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None:
            d.stop()


def shim_command(
    target: list[str], *, config: Path | None = None, name: str | None = None, extra: tuple[str, ...] = ()
) -> list[str]:
    """``mcp-action-firewall [options] -- TARGET`` as an MCP client config would spell it."""
    # No hold unless a test asks for one (``extra=("--hold", "N")``, which comes later and wins):
    # with a console open, a held call would make every paused call wait.
    cmd = [sys.executable, "-m", "shim", "--no-autostart", "--hold", "0"]
    if config is not None:
        cmd += ["--config", str(config)]
    if name is not None:
        cmd += ["--name", name]
    return [*cmd, *extra, "--", *target]


def fixture_shim(effects: Path, **kwargs: Any) -> list[str]:
    """The shim around the fixture server."""
    return shim_command(fixture_command(effects), **kwargs)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write a policy file and return its path."""
    path.write_text(json.dumps(config, indent=2))
    return path


def effects_of(effects: Path) -> list[dict[str, Any]]:
    """The side effects the fixture server recorded."""
    if not effects.exists():
        return []
    return [json.loads(line) for line in effects.read_text().splitlines() if line.strip()]


def wait_until(predicate: Any, limit: float = 20.0, what: str = "condition") -> None:
    """Wait for something another process makes true (bounded; not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def connected_sessions(daemon: Daemon) -> list[dict[str, Any]]:
    """Sessions whose shim is connected right now."""
    sessions = json.loads(daemon.console("pending", "--json").stdout)["sessions"]
    return [s for s in sessions if s["connected"]]
