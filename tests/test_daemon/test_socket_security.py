"""Only the owner: private modes on disk, and peer credentials checked on every connection."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Daemon
from daemon import protocol as p


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_and_state_are_private(daemon: Daemon) -> None:
    """The socket's and the state's directories are 0700; the socket and the database are 0600, and
    there is no key file (codes live in the daemon's memory only)."""
    assert mode(os.path.dirname(daemon.socket)) == 0o700
    assert mode(daemon.socket) == 0o600
    assert mode(daemon.state_dir) == 0o700
    assert mode(daemon.state_dir / "firewall.db") == 0o600
    assert not (daemon.state_dir / "codes.key").exists()


def test_refuses_a_socket_directory_owned_by_someone_else(home: Path, tmp_path: Path) -> None:
    """A socket directory that another user owns (a squatter in /tmp) is refused, not used."""
    if os.getuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    squat = tmp_path / "squat"
    squat.mkdir(mode=0o777)
    os.chown(squat, 65534, 65534)
    d = Daemon(home)
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--socket", str(squat / "s.sock")],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "belongs to uid 65534" in result.stderr


CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
    data = s.recv(65536)
except OSError:  # the daemon hung up first
    data = b""
print("WELCOME" if data else "CLOSED")
"""


@pytest.fixture
def open_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose socket lives in a directory that other users can reach."""
    base = tempfile.mkdtemp(prefix="fw-open-", dir="/tmp")
    d = Daemon(tmp_path)
    d.socket = os.path.join(base, "run", "firewalld.sock")
    d.env["FIREWALL_SOCKET"] = d.socket
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_other_uid_is_refused_even_when_modes_are_wrong(open_daemon: Daemon) -> None:
    """If the modes were loosened by mistake, a connection from another uid is still refused."""
    if os.getuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and a system python to act as another user")
    run_dir = os.path.dirname(open_daemon.socket)
    os.chmod(os.path.dirname(run_dir), 0o711)
    os.chmod(run_dir, 0o711)
    os.chmod(open_daemon.socket, 0o666)
    hello = p.encode(p.Hello(role=p.ROLE_CONSOLE)).hex()
    as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        CLIENT,
    ]
    result = subprocess.run(
        [*as_nobody, open_daemon.socket, hello], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "CLOSED", result.stderr
    # The same request from our own uid is welcomed: the refusal above was about the uid.
    own = subprocess.run(
        ["/usr/bin/python3", "-c", CLIENT, open_daemon.socket, hello], capture_output=True, text=True
    )
    assert own.stdout.strip() == "WELCOME"
    assert "refused a connection from uid 65534" in open_daemon.log_text()
