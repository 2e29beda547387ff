"""``firewalld status``, ``firewalld stop`` and ``firewalld init``: the daemon's life, from outside.

``status`` and ``stop`` speak to the running daemon over its socket as a console (same uid only, like
every console). ``stop`` falls back to SIGTERM to the pid in the single-instance lock when the socket
does not answer, and waits until the lock is released, i.e. until the daemon has gone.

Exit statuses, like ``systemctl``'s: 0 done (``status``: running), 1 failed, 3 not running.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from daemon import protocol as p
from daemon.userconfig import find_policy, user_config_files, write_starter

NOT_RUNNING = 3


class Unreachable(Exception):
    """Nothing answers on the socket (the message says why)."""


def ask(socket_path: str, message: p.Message, timeout: float = 5.0) -> p.Message:
    """Send one console request and return the daemon's answer to it.

    Raises:
        Unreachable: no daemon answers on ``socket_path``.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            sock.sendall(p.encode(p.Hello(role=p.ROLE_CONSOLE)) + p.encode(message))
            decoder = p.FrameDecoder()
            rid = getattr(message, "rid", None)
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    raise Unreachable("the daemon closed the connection")
                for reply in decoder.feed(data):
                    if isinstance(reply, p.Error):
                        raise Unreachable(reply.message)
                    if getattr(reply, "rid", None) == rid:
                        return reply
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc)) from None


def lock_holder(lock_path: str) -> int | None:
    """The pid of the daemon holding the single-instance lock, or None if nobody holds it."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0  # held: a daemon runs (0: pid not yet written)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _uptime(seconds: float) -> str:
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s"


def _policy_line(entry: dict[str, Any]) -> str:
    where = entry["path"] or "(bundled defaults)"
    section = f", server section {entry['server']!r}" if entry["server"] else ", no server section (--name)"
    n = entry["sessions"]
    line = f"    {where}{section}: {n} session{'' if n == 1 else 's'}"
    if entry.get("error"):
        line += f"; DOES NOT LOAD (calls denied): {entry['error'].splitlines()[0]}"
    return line


def status(socket_path: str, *, as_json: bool) -> int:
    """``firewalld status``: print what the daemon says of itself; 3 if it does not run."""
    here = find_policy(os.getcwd())
    try:
        reply = ask(socket_path, p.StatusQuery(1))
    except Unreachable as exc:
        pid = lock_holder(socket_path + ".lock")
        if pid is None:
            if as_json:
                print(json.dumps({"running": False, "socket_path": socket_path}))
            else:
                print(f"firewalld is not running (no daemon for {socket_path})")
                print("  a shim starts it on demand; or run `firewalld`, or `firewalld install-service`")
                print(f"  a shim started here would use the policy: {here or '(bundled defaults)'}")
            return NOT_RUNNING
        print(
            f"firewalld: pid {pid} holds the lock but does not answer on {socket_path}: {exc}",
            file=sys.stderr,
        )
        return 1
    assert isinstance(reply, p.StatusReport)
    if as_json:
        print(json.dumps({"running": True, **reply._asdict()}, indent=2))
        return 0
    up = _uptime(time.time() - reply.started)
    print(f"firewalld is running (pid {reply.pid}, version {reply.version}, up {up})")
    print(f"  socket:   {reply.socket_path}")
    print(f"  state:    {reply.state_dir} (firewall.db; firewalld.log when a shim started it)")
    print(f"  sessions: {reply.sessions} connected")
    print(f"  pending:  {reply.pending} action(s) waiting for approval")
    print("  policies in use:" if reply.policies else "  policies in use: none (no session)")
    for entry in reply.policies:
        print(_policy_line(entry))
        for warning in entry.get("warnings") or []:
            print(f"      warning: {warning}")
    print(f"  a shim started here would use the policy: {here or '(bundled defaults)'}")
    return 0


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts: it has stopped, its parent has yet to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False  # no /proc (macOS): kill(0) said it is there


def stop(socket_path: str, *, timeout: float) -> int:
    """``firewalld stop``: ask the daemon to stop (else SIGTERM it) and wait until it has gone."""
    try:
        about = ask(socket_path, p.StatusQuery(1))
        assert isinstance(about, p.StatusReport)
        pid = about.pid
        reply = ask(socket_path, p.StopDaemon(2))
        how = reply.message if isinstance(reply, p.Ack) else f"asked pid {pid} to stop"
    except Unreachable as exc:
        held = lock_holder(socket_path + ".lock")
        if held is None:
            print(f"firewalld is not running (no daemon for {socket_path})")
            return NOT_RUNNING
        if not held:
            print(f"firewalld: the daemon does not answer ({exc}) and its pid is unknown", file=sys.stderr)
            return 1
        pid = held
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        how = f"sent SIGTERM to pid {pid} (the socket did not answer: {exc})"
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            print(
                f"firewalld: {how}, but it still runs after {timeout:g} s; `kill -9 {pid}` if it is stuck",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
    print(f"{how}; it has stopped")
    return 0


def init(path: str | None, *, force: bool) -> int:
    """``firewalld init``: write the starter policy where shims look for it, and say where."""
    places = user_config_files()
    target = os.path.abspath(os.path.expanduser(path)) if path else places[0]
    try:
        write_starter(target, force=force)
    except FileExistsError:
        print(f"firewalld: {target} already exists; left as it is (--force replaces it)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"firewalld: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote the starter policy to {target}")
    if path is None:
        print("Shims with no --config and no ./firewall_config.json in their server's directory use it now.")
    else:
        print(f"Give it to the shim with --config {target}.")
    if path is None and len(places) > 1:
        print(
            f"note: it follows XDG_CONFIG_HOME; MCP clients usually start servers without that variable, and "
            f"their shims look in {places[1]}: pass --config {target} to them, or run "
            f"`firewalld init --path {places[1]}`"
        )
    print(f"Edit it, then check it: firewalld check-config {target}")
    return 0
