"""``firewalld install-service`` / ``uninstall-service``: run the daemon under the user's service manager.

Linux: a systemd *user* socket unit owns the socket and starts the service on the first connection
(socket activation: the daemon takes the listening socket as fd 3, see ``LISTEN_FDS``). macOS: a
launchd agent that keeps the daemon running. The unit files are templates in ``daemon/units/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from xml.sax.saxutils import escape

SYSTEMD_UNITS = ("mcp-action-firewall.socket", "mcp-action-firewall.service")
LAUNCHD_PLIST = "io.github.mcp-action-firewall.firewalld.plist"


class ServiceError(Exception):
    """Raised when the service manager refuses a step; the message says which and why."""


@dataclass(frozen=True, slots=True)
class UnitFile:
    """A rendered file and where it goes."""

    path: str
    text: str


def _template(name: str) -> str:
    return resources.files("daemon").joinpath("units", name).read_text(encoding="utf-8")


def _systemd_word(value: str) -> str:
    """Quote a value for a unit file: specifiers (%) escaped, spaces quoted."""
    value = value.replace("%", "%%")
    if any(c in value for c in ' "\\'):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def render_systemd(unit_dir: str, socket_path: str, python: str) -> list[UnitFile]:
    """The systemd user units, rendered for this socket and interpreter."""
    out = []
    for name in SYSTEMD_UNITS:
        text = _template(name).replace("@SOCKET@", _systemd_word(socket_path))
        text = text.replace("@PYTHON@", _systemd_word(python))
        out.append(UnitFile(os.path.join(unit_dir, name), text))
    return out


def render_launchd(agent_dir: str, socket_path: str, python: str, log_path: str) -> list[UnitFile]:
    """The launchd agent plist, rendered for this socket and interpreter."""
    text = _template(LAUNCHD_PLIST)
    for key, value in (("@SOCKET@", socket_path), ("@PYTHON@", python), ("@LOG@", log_path)):
        text = text.replace(key, escape(value))
    return [UnitFile(os.path.join(agent_dir, LAUNCHD_PLIST), text)]


def default_unit_dir(home: str) -> str:
    """Where this platform's user service files live."""
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "LaunchAgents")
    return os.path.join(home, ".config", "systemd", "user")


def rendered(unit_dir: str, socket_path: str, log_path: str) -> list[UnitFile]:
    """The files for this platform."""
    if sys.platform == "darwin":
        return render_launchd(unit_dir, socket_path, sys.executable, log_path)
    return render_systemd(unit_dir, socket_path, sys.executable)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip()}")


def install(files: list[UnitFile], *, activate: bool) -> list[str]:
    """Write the files and (if ``activate``) enable them; returns what was done, one line each."""
    done = []
    for f in files:
        os.makedirs(os.path.dirname(f.path), exist_ok=True)
        with open(f.path, "w", encoding="utf-8") as out:
            out.write(f.text)
        done.append(f"wrote {f.path}")
    if not activate:
        return done
    if sys.platform == "darwin":
        _run(["launchctl", "bootstrap", f"gui/{os.getuid()}", files[0].path])
        done.append("loaded the launchd agent")
    elif shutil.which("systemctl"):
        _run(["systemctl", "--user", "daemon-reload"])
        _run(["systemctl", "--user", "enable", "--now", SYSTEMD_UNITS[0]])
        done.append(f"enabled and started {SYSTEMD_UNITS[0]}")
    else:
        raise ServiceError("systemctl was not found; the unit files are written but not enabled")
    return done


def uninstall(files: list[UnitFile], *, activate: bool) -> list[str]:
    """Stop, disable and remove the files; returns what was done."""
    done = []
    if activate and sys.platform == "darwin":
        subprocess.run(["launchctl", "bootout", f"gui/{os.getuid()}", files[0].path], capture_output=True)
        done.append("unloaded the launchd agent")
    elif activate and shutil.which("systemctl"):
        subprocess.run(["systemctl", "--user", "disable", "--now", *SYSTEMD_UNITS], capture_output=True)
        done.append("stopped and disabled the units")
    for f in files:
        try:
            os.unlink(f.path)
            done.append(f"removed {f.path}")
        except FileNotFoundError:
            pass
    if activate and sys.platform != "darwin" and shutil.which("systemctl"):
        subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True)
    return done
