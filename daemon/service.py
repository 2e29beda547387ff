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


class NoUserManager(ServiceError):
    """Raised when ``systemctl --user`` cannot reach a user service manager (no user bus: a
    container, an SSH session without lingering, a root shell entered with su)."""


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ServiceError(f"`{' '.join(cmd)}` failed: {_said(result)}")


def _said(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout).strip()
    return text.splitlines()[0] if text else f"exit status {result.returncode}"


def _user_manager() -> None:
    """Check that ``systemctl --user`` reaches a user manager.

    Raises:
        NoUserManager: it does not; the message is one line and says what to do instead.
    """
    result = subprocess.run(
        ["systemctl", "--user", "show-environment"], capture_output=True, text=True, timeout=30
    )
    if result.returncode == 0:
        return
    # Any failure of this read-only call means there is no manager to enable units with (typically
    # "Failed to connect to bus: No medium found", or $DBUS_SESSION_BUS_ADDRESS/$XDG_RUNTIME_DIR unset).
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "$USER"
    raise NoUserManager(
        f"systemctl --user cannot reach a user service manager ({_said(result)}). Next: run "
        f"`firewalld install-service --files-only` (the shim starts the daemon on demand anyway), or "
        f"`loginctl enable-linger {user}` and log in again, then retry"
    )


def install(files: list[UnitFile], *, activate: bool) -> list[str]:
    """Write the files and (if ``activate``) enable them; returns what was done, one line each.

    Raises:
        NoUserManager: ``activate`` on Linux, and no user manager answers; nothing was written.
        ServiceError: the service manager refused a step (the files are written).
    """
    if activate and sys.platform != "darwin":
        if not shutil.which("systemctl"):
            raise ServiceError(
                "systemctl was not found; nothing written. Use --files-only to write the unit files anyway"
            )
        _user_manager()  # before writing anything: a failed install leaves nothing behind
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
    else:
        _run(["systemctl", "--user", "daemon-reload"])
        _run(["systemctl", "--user", "enable", "--now", SYSTEMD_UNITS[0]])
        done.append(f"enabled and started {SYSTEMD_UNITS[0]}")
    return done


def uninstall(files: list[UnitFile], *, activate: bool) -> tuple[list[str], list[str]]:
    """Stop, disable and remove the files.

    Returns:
        What was done, and what failed (one line each). Nothing that failed is reported as done.
    """
    done: list[str] = []
    failed: list[str] = []
    if activate and sys.platform == "darwin":
        result = subprocess.run(
            ["launchctl", "bootout", f"gui/{os.getuid()}", files[0].path], capture_output=True, text=True
        )
        if result.returncode == 0:
            done.append("unloaded the launchd agent")
        else:
            failed.append(f"could not unload the launchd agent: {_said(result)}")
    elif activate and shutil.which("systemctl"):
        try:
            _user_manager()
        except NoUserManager as exc:
            failed.append(f"the units were not stopped or disabled: {exc}")
        else:
            result = subprocess.run(
                ["systemctl", "--user", "disable", "--now", *SYSTEMD_UNITS], capture_output=True, text=True
            )
            if result.returncode == 0:
                done.append("stopped and disabled the units")
            elif "does not exist" in _said(result) or "not loaded" in _said(result):
                done.append("the units were not enabled")
            else:
                failed.append(f"could not stop and disable the units: {_said(result)}")
    elif activate:
        failed.append("systemctl was not found: nothing was stopped or disabled")
    for f in files:
        try:
            os.unlink(f.path)
            done.append(f"removed {f.path}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed.append(f"could not remove {f.path}: {exc.strerror or exc}")
    if activate and sys.platform != "darwin" and shutil.which("systemctl") and not failed:
        result = subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True, text=True)
        if result.returncode != 0:
            failed.append(f"`systemctl --user daemon-reload` failed: {_said(result)}")
    return done, failed
