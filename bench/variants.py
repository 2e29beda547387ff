"""What is measured: the variants' command lines, their environment, and the daemon they share.

Every variant runs the same target command; only what sits in front of it changes. Processes get
the minimal environment that MCP clients give servers (HOME, LOGNAME, PATH, SHELL, TERM, USER),
with HOME pointing to the run's temporary directory, plus ``PYTHONPATH`` so that the ``shim`` and
``daemon`` measured are the ones in this checkout (a scratch copy measures its own).
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import BENCH_DIR, ROOT
from bench.peer import peak_rss_kib

PYTHON = sys.executable
FAST_TARGET = [PYTHON, str(BENCH_DIR / "fast_target.py")]
FIXTURE_SERVER = ROOT / "tests" / "fixtures" / "fixture_server.py"
SEED_BIN = BENCH_DIR / ".seed-venv" / "bin" / "mcp-action-firewall"


@dataclass(frozen=True)
class Variant:
    """One way of running the target: ``wrap`` turns the target's argv into the variant's argv."""

    name: str
    label: str
    wrap: Callable[[list[str]], list[str]]
    uses_daemon: bool = False
    #: Environment entries that replace the run's (another checkout's PYTHONPATH and HOME).
    env: dict[str, str] | None = None


def minimal_env(home: Path, root: Path = ROOT, **extra: str) -> dict[str, str]:
    """The six variables MCP clients pass to stdio servers, plus ``PYTHONPATH`` (``root``) and ``extra``."""
    account = pwd.getpwuid(os.getuid())
    env = {
        "HOME": str(home),
        "LOGNAME": account.pw_name,
        "PATH": os.environ.get("PATH", os.defpath),
        "SHELL": account.pw_shell or "/bin/sh",
        "TERM": "xterm-256color",
        "USER": account.pw_name,
        "PYTHONPATH": str(root),
    }
    env.update(extra)
    return env


def build_variants(socket_path: str, rules_config: Path, *, seed: bool) -> list[Variant]:
    """The variants of one run, in table order."""
    shim = [PYTHON, "-m", "shim", "--no-autostart", "--socket", socket_path]
    variants = [
        Variant("direct", "direct", lambda argv: argv),
        Variant("relay", "byte relay", lambda argv: [PYTHON, str(BENCH_DIR / "relay.py"), "--", *argv]),
    ]
    if seed:
        variants.append(
            Variant("seed", "seed 0.3.0", lambda argv: [str(SEED_BIN), "--target", shlex.join(argv)])
        )
    variants += [
        Variant("shim", "shim+daemon", lambda argv: [*shim, "--", *argv], uses_daemon=True),
        Variant(
            "shimrt",
            "shim+daemon, no leases",
            lambda argv: [*shim, "--no-leases", "--", *argv],
            uses_daemon=True,
        ),
        Variant(
            "shim100",
            "shim+daemon, 100 rules",
            lambda argv: [*shim, "--config", str(rules_config), "--", *argv],
            uses_daemon=True,
        ),
    ]
    return variants


def compare_variants(socket_path: str, rules_config: Path, env: dict[str, str], tag: str) -> list[Variant]:
    """The shim variants once more, run from another checkout (``env`` carries its PYTHONPATH)."""
    shim = [PYTHON, "-m", "shim", "--no-autostart", "--socket", socket_path]
    return [
        Variant(f"shim@{tag}", f"shim+daemon @{tag}", lambda argv: [*shim, "--", *argv], True, env),
        Variant(
            f"shim100@{tag}",
            f"shim+daemon, 100 rules @{tag}",
            lambda argv: [*shim, "--config", str(rules_config), "--", *argv],
            True,
            env,
        ),
    ]


def seed_status() -> str | None:
    """None if the seed can run, else why not (for the note in the report)."""
    if not SEED_BIN.exists():
        return f"{SEED_BIN} is missing: run `python -m bench --setup-seed` (needs Python 3.12+ and PyPI)"
    return None


def setup_seed() -> int:
    """Create ``bench/.seed-venv`` with Python 3.12+ and install the seed (0.3.0) from PyPI into it."""
    candidates = sorted(Path(p) for p in _pyenv_pythons())
    if sys.version_info >= (3, 12):
        candidates.append(Path(sys.executable))
    if not candidates:
        print(
            "no Python 3.12+ found (tried pyenv and this interpreter); the seed stays skipped",
            file=sys.stderr,
        )
        return 1
    venv = SEED_BIN.parent.parent
    subprocess.run([str(candidates[-1]), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mcp-action-firewall==0.3.0"], check=True)
    print(f"installed the seed into {venv}")
    return 0


def _pyenv_pythons() -> list[str]:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    versions = Path(root) / "versions"
    found = []
    for minor in ("3.12", "3.13"):
        found += [
            str(p / "bin" / "python") for p in versions.glob(f"{minor}.*") if (p / "bin" / "python").exists()
        ]
    return found


class Daemon:
    """A firewalld of the run's own, under the run's HOME."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        from daemon.protocol import default_socket_path

        self.home = home
        self.env = env
        self.socket = default_socket_path(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        with open(self.home / "firewalld.stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "daemon", "run"],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"firewalld exited with {self.proc.returncode}; see {err.name}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(self.socket)
                    return
                except OSError:
                    time.sleep(0.02)
        raise TimeoutError(f"firewalld did not listen on {self.socket}")

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_kib(self) -> int | None:
        """The daemon's peak RSS so far."""
        return peak_rss_kib(self.pid) if self.proc is not None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
