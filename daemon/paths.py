"""Where things live: the daemon's socket, its state directory and the user's policy directory.

Stdlib only, as the rest of the wire code (:mod:`daemon.protocol` re-exports these): the shim
imports it.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

# --------------------------------------------------------------------------------------------
# Where things live. MCP clients start servers with only HOME, LOGNAME, PATH, SHELL, TERM and
# USER in the environment, so the defaults depend on HOME (and the uid) alone; the shim, the
# daemon and the console all call these same functions and agree.
# --------------------------------------------------------------------------------------------

APP = "mcp-action-firewall"
#: sun_path is 108 bytes on Linux and 104 on macOS; keep a margin.
_MAX_SOCKET_PATH = 100


def home_dir(environ: Mapping[str, str] | None = None) -> str:
    """The user's home: ``$HOME``, else the password database."""
    env = os.environ if environ is None else environ
    home = env.get("HOME")
    return home if home else pwd.getpwuid(os.getuid()).pw_dir


def default_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the daemon keeps its database, lock and logs: ``$HOME/.local/state/mcp-action-firewall``."""
    return os.path.join(home_dir(environ), ".local", "state", APP)


def default_config_dir(environ: Mapping[str, str] | None = None) -> str:
    """Where the user's policy lives by default: ``$HOME/.config/mcp-action-firewall``."""
    return os.path.join(home_dir(environ), ".config", APP)


def default_socket_path(environ: Mapping[str, str] | None = None) -> str:
    """The daemon's socket: in the state directory, or under /tmp when that path is too long.

    The /tmp fallback is named after the uid and a hash of HOME, so two homes of one user (as in
    tests) never share a socket; its directory is created 0700 and its owner checked.
    """
    env = os.environ if environ is None else environ
    if env.get("FIREWALL_SOCKET"):
        return env["FIREWALL_SOCKET"]
    path = os.path.join(default_state_dir(env), "firewalld.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    import hashlib  # only on this rare path: the shim's start-up is a budget

    digest = hashlib.sha256(home_dir(env).encode()).hexdigest()[:12]
    return f"/tmp/{APP}-{os.getuid()}-{digest}/firewalld.sock"


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and parents) with mode 0700 and check that we own it and nobody else can enter.

    Raises:
        PermissionError: the directory exists but belongs to someone else or is open to others.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to us; refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
