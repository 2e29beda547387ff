"""The install guard: a command whose `daemon` package is another project's refuses, in one line.

python-daemon installs a top-level `daemon` package too. The real case is built here: this project's
wheel (built from the checkout by pip, as pipx would) and a stand-in python-daemon wheel installed into
one fresh venv, the second overwriting `daemon/__init__.py`. A test that shadows `daemon` on the path
covers the other way the name can go wrong.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

COMMANDS = ("mcp-action-firewall", "firewalld", "firewall-console")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def fake_python_daemon_wheel(where: Path) -> Path:
    """A wheel named python-daemon whose top-level package is `daemon`, like the real one."""
    files = {
        "daemon/__init__.py": b'"""Library to implement a well-behaved Unix daemon process."""\n'
        b"from .daemon import DaemonContext\n",
        "daemon/daemon.py": b"class DaemonContext:\n    pass\n",
        "python_daemon-99.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: python-daemon\n"
        b"Version: 99.0\n",
        "python_daemon-99.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        "python_daemon-99.0.dist-info/top_level.txt": b"daemon\n",
    }
    record = [_record_line(name, data) for name, data in files.items()]
    record.append("python_daemon-99.0.dist-info/RECORD,,")
    path = where / "python_daemon-99.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
        whl.writestr("python_daemon-99.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def build_our_wheel(where: Path) -> tuple[Path, str]:
    """This project's wheel, built by pip from a copy of the checkout; and pip's output."""
    src = where / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for package in ("daemon", "shim", "console"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = where / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = out.glob("mcp_action_firewall-*.whl")
    return wheel, built.stdout + built.stderr


@pytest.fixture(scope="module")
def tool_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A fresh venv with this project's wheel in it (no dependencies: the guard runs before any)."""
    where = tmp_path_factory.mktemp("install")
    wheel, build_log = build_our_wheel(where)
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    pip_install(env_dir, wheel)
    return env_dir, where, build_log


def pip_install(env_dir: Path, *wheels: Path) -> None:
    """Install wheels into ``env_dir`` with this interpreter's pip (no index, no dependencies)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q"]
        + ["--no-deps", "--no-index", *map(str, wheels)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def run_command(env_dir: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of the installed commands, as a user would run it."""
    env = {"HOME": str(env_dir), "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(
        [str(env_dir / "bin" / command), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_the_wheel_ships_the_units_and_builds_without_setuptools_warnings(
    tool_venv: tuple[Path, Path, str],
) -> None:
    """daemon/units is in the wheel, and the build says nothing about packages it would ignore."""
    env_dir, where, build_log = tool_venv
    (wheel,) = (where / "wheels").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "daemon/units/mcp-action-firewall.service" in names
    assert "daemon/units/io.github.mcp-action-firewall.firewalld.plist" in names
    assert "daemon/default_config.json" in names
    assert "absent from the `packages` configuration" not in build_log
    assert "Package would be ignored" not in build_log


def test_commands_refuse_when_python_daemon_overwrote_our_package(tool_venv: tuple[Path, Path, str]) -> None:
    """With python-daemon installed over it, each command exits 78 with one line naming it."""
    env_dir, where, _ = tool_venv
    before = run_command(env_dir, "mcp-action-firewall", "--version")
    assert before.returncode == 0, before.stderr  # the control: alone, it runs
    pip_install(env_dir, fake_python_daemon_wheel(where))
    for command in COMMANDS:
        result = run_command(env_dir, command, "--help")
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"{command}: the Python package 'daemon' ")
        assert "python-daemon" in lines[0] and "pipx install" in lines[0]
        assert "Traceback" not in result.stderr and result.stdout == ""
    # Removing python-daemon takes the shared daemon/__init__.py with it: still refused, not a crash.
    removed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
        + ["uninstall", "-y", "-q", "python-daemon"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert removed.returncode == 0, removed.stderr
    result = run_command(env_dir, "firewalld", "status")
    assert result.returncode == 78 and "not this project's" in result.stderr, result.stderr


def test_a_daemon_package_earlier_on_the_path_is_refused(tmp_path: Path) -> None:
    """A foreign `daemon` found first on sys.path (no `daemon.cli` in it): words, not a traceback."""
    (tmp_path / "daemon").mkdir()
    (tmp_path / "daemon" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for code, prog in (
        ("from shim.guard import firewalld; firewalld()", "firewalld"),
        ("from shim.guard import firewall_console; firewall_console()", "firewall-console"),
        ("from shim.cli import run; run()", "mcp-action-firewall"),
    ):
        result = subprocess.run(
            [sys.executable, "-c", code, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            cwd=tmp_path,
        )
        assert result.returncode == 78, (prog, result.stderr)
        assert result.stderr.startswith(f"{prog}: the Python package 'daemon' ({tmp_path / 'daemon'})")
        assert "Traceback" not in result.stderr
