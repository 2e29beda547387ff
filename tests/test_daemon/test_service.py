"""The generated systemd and launchd files: rendered right, valid for their tools, removable."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Daemon
from daemon import service


def test_systemd_units_name_the_socket_and_the_interpreter(tmp_path: Path) -> None:
    """The socket unit listens where shims look; the service runs this interpreter's daemon on it."""
    sock, svc = service.render_systemd(str(tmp_path), "/home/a b/%s.sock", "/opt/py/bin/python")
    assert sock.path.endswith("mcp-action-firewall.socket")
    assert 'ListenStream="/home/a b/%%s.sock"' in sock.text
    assert "SocketMode=0600" in sock.text and "DirectoryMode=0700" in sock.text
    assert 'ExecStart=/opt/py/bin/python -m daemon run --socket "/home/a b/%%s.sock"' in svc.text
    assert "Requires=mcp-action-firewall.socket" in svc.text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(home: Path, tmp_path: Path) -> None:
    """`firewalld install-service --files-only` writes units that systemd-analyze accepts."""
    unit_dir = tmp_path / "units"
    d = Daemon(home)
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "install-service", "--files-only", "--unit-dir", str(unit_dir)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(unit_dir.iterdir())
    assert [f.name for f in files] == ["mcp-action-firewall.service", "mcp-action-firewall.socket"]
    assert f"ListenStream={d.socket}" in (unit_dir / "mcp-action-firewall.socket").read_text()
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    removed = subprocess.run(
        [sys.executable, "-m", "daemon", "uninstall-service", "--files-only", "--unit-dir", str(unit_dir)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert removed.returncode == 0 and list(unit_dir.iterdir()) == []


def test_launchd_plist_is_a_valid_plist(tmp_path: Path) -> None:
    """The launchd agent parses as a property list and runs the daemon on the socket, kept alive."""
    (plist,) = service.render_launchd(str(tmp_path), "/Users/a&b/fw.sock", "/usr/bin/python3", "/tmp/fw.log")
    data = plistlib.loads(plist.text.encode())
    assert data["ProgramArguments"] == [
        "/usr/bin/python3",
        "-m",
        "daemon",
        "run",
        "--socket",
        "/Users/a&b/fw.sock",
    ]
    assert data["KeepAlive"] is True and data["RunAtLoad"] is True
    assert data["Umask"] == 0o077


def test_print_shows_the_files_without_writing(home: Path, tmp_path: Path) -> None:
    """`install-service --print` prints the units and writes nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "install-service", "--print", "--unit-dir", str(tmp_path / "u")],
        env=Daemon(home).env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "[Socket]" in result.stdout or "<plist" in result.stdout
    assert not (tmp_path / "u").exists()
