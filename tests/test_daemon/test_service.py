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


FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "{log}"
{body}
"""
NO_BUS = 'echo "Failed to connect to bus: No medium found" >&2; exit 1'


def fake_systemctl(tmp_path: Path, body: str) -> tuple[dict[str, str], Path]:
    """A `systemctl` first on PATH that logs its arguments and runs ``body``; the env to use it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(log=log, body=body))
    script.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = Daemon(home).env
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env, log


def firewalld(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`firewalld ARGS` with this environment."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd only")
def test_install_service_without_a_user_bus_says_so_in_one_line(tmp_path: Path) -> None:
    """No user manager: one line naming the cause and the next steps, exit 1, nothing written."""
    env, log = fake_systemctl(tmp_path, NO_BUS)
    unit_dir = tmp_path / "units"
    result = firewalld(env, "install-service", "--unit-dir", str(unit_dir))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "cannot reach a user service manager (Failed to connect to bus: No medium found)" in line
    assert "--files-only" in line and "loginctl enable-linger" in line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not unit_dir.exists()  # a failed install leaves nothing behind
    assert log.read_text().splitlines() == ["systemctl --user show-environment"]


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd only")
def test_uninstall_service_without_a_user_bus_reports_no_false_success(tmp_path: Path) -> None:
    """The files go, but "stopped and disabled" is never claimed when systemctl could not do it."""
    env, _ = fake_systemctl(tmp_path, NO_BUS)
    unit_dir = tmp_path / "units"
    assert firewalld(env, "install-service", "--files-only", "--unit-dir", str(unit_dir)).returncode == 0
    result = firewalld(env, "uninstall-service", "--unit-dir", str(unit_dir))
    assert result.returncode == 1
    assert "stopped and disabled" not in result.stdout
    assert "the units were not stopped or disabled" in result.stderr
    assert "removed" in result.stdout and list(unit_dir.iterdir()) == []


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd only")
def test_install_and_uninstall_service_with_a_user_manager(tmp_path: Path) -> None:
    """With a working systemctl: reload, enable --now the socket; uninstall disables, removes, reloads."""
    env, log = fake_systemctl(tmp_path, "exit 0")
    unit_dir = tmp_path / "units"
    installed = firewalld(env, "install-service", "--unit-dir", str(unit_dir))
    assert installed.returncode == 0, installed.stderr
    assert "enabled and started mcp-action-firewall.socket" in installed.stdout
    removed = firewalld(env, "uninstall-service", "--unit-dir", str(unit_dir))
    assert removed.returncode == 0, removed.stderr
    assert "stopped and disabled the units" in removed.stdout
    assert log.read_text().splitlines() == [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        "systemctl --user enable --now mcp-action-firewall.socket",
        "systemctl --user show-environment",
        "systemctl --user disable --now mcp-action-firewall.socket mcp-action-firewall.service",
        "systemctl --user daemon-reload",
    ]


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd only")
def test_uninstall_service_reports_a_failed_disable(tmp_path: Path) -> None:
    """systemctl reaches the manager but refuses the disable: exit 1 and the reason, no success line."""
    body = 'case "$2" in disable) echo "Access denied" >&2; exit 1;; esac; exit 0'
    env, _ = fake_systemctl(tmp_path, body)
    unit_dir = tmp_path / "units"
    assert firewalld(env, "install-service", "--files-only", "--unit-dir", str(unit_dir)).returncode == 0
    result = firewalld(env, "uninstall-service", "--unit-dir", str(unit_dir))
    assert result.returncode == 1
    assert "could not stop and disable the units: Access denied" in result.stderr
    assert "stopped and disabled" not in result.stdout
