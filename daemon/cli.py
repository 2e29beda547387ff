"""``firewalld``: run the daemon, or ask the policy what it would do with a call."""

from __future__ import annotations

import argparse
import errno
import fcntl
import gc
import json
import logging
import os
import signal
import socket
import sys

from pydantic import ValidationError

from daemon import protocol as p
from daemon.settings import DaemonSettings

log = logging.getLogger("firewalld")

DESCRIPTION = """\
The MCP Action Firewall daemon: one per user. It owns the policy, the actions waiting for
approval and their one-time codes, and the audit log, for every mcp-action-firewall shim.
The shim starts it on demand; run it yourself (or from systemd/launchd) to keep it up.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firewalld", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version="firewalld 0.4.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon in the foreground (the default)")
    _add_run_options(run)
    explain = sub.add_parser(
        "explain", help="dry run: show which rule decides a tool call, without running anything"
    )
    explain.add_argument("tool", help="the tool name, as the agent would call it")
    explain.add_argument(
        "arguments", nargs="?", default="{}", help="the call's arguments as JSON (default {})"
    )
    explain.add_argument(
        "--config", metavar="FILE", help="policy file (default ./firewall_config.json, else bundled)"
    )
    explain.add_argument("--name", help="the server section to apply (servers.NAME)")
    check = sub.add_parser("check-config", help="validate a policy file and exit")
    check.add_argument("config", metavar="FILE")
    for name, verb in (("install-service", "write and enable"), ("uninstall-service", "disable and remove")):
        svc = sub.add_parser(
            name,
            help=f"{verb} the user service (systemd socket activation on Linux, a launchd agent on macOS)",
        )
        svc.add_argument("--socket", metavar="PATH", help="socket path (default: derived from HOME)")
        svc.add_argument("--unit-dir", metavar="DIR", help="where the unit files go (default: the user's)")
        svc.add_argument(
            "--files-only",
            action="store_true",
            help="only write/remove the files; do not call systemctl/launchctl",
        )
    sub.choices["install-service"].add_argument(
        "--print", action="store_true", help="print the files instead of writing them"
    )
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH", help="socket path (default: derived from HOME)")
    parser.add_argument("--state-dir", metavar="DIR", help="database, key, lock and log directory")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="log to the state directory, and exit quietly if a daemon already runs (used by the shim)",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``firewalld``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")  # `firewalld [options]` means `firewalld run [options]`
    args = _parser().parse_args(argv)
    if args.command == "explain":
        return _explain(args.config, args.name, args.tool, args.arguments)
    if args.command == "check-config":
        return _explain(args.config, None, None, None)
    if args.command in ("install-service", "uninstall-service"):
        return _service(args)
    overrides = {k: v for k, v in (("socket_path", args.socket), ("state_dir", args.state_dir)) if v}
    if args.verbose:
        overrides["log_level"] = "DEBUG" if args.verbose > 1 else "INFO"
    try:
        settings = DaemonSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"firewalld: setting {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    return run_daemon(settings, detach=args.detach)


def _explain(config: str | None, name: str | None, tool: str | None, arguments: str | None) -> int:
    from daemon.config import ConfigError
    from daemon.policy import load_policy

    if config is None and os.path.isfile("firewall_config.json"):
        config = "firewall_config.json"
    try:
        policy = load_policy(config, name)
    except ConfigError as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    if tool is None:
        print(f"{config}: OK")
        for warning in policy.warnings:
            print(f"warning: {warning}")
        return 0
    try:
        args = json.loads(arguments or "{}")
    except ValueError as exc:
        print(f"firewalld: the arguments are not valid JSON: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {config or '(bundled defaults)'}" + (f", server section {name!r}" if name else ""))
    for warning in policy.warnings:
        print(f"warning: {warning}")
    for line in policy.explain(tool, args):
        print(line)
    for line in _pin_lines(tool, name):
        print(line)
    return 0


def _pin_lines(tool: str, name: str | None) -> list[str]:
    """What the pins (read from the state database, read-only) say of ``tool``: a quarantined
    definition denies the call before the policy is asked."""
    from daemon.pins import quarantined_in

    try:
        db_path = DaemonSettings().db_path
    except ValidationError:
        return []
    lines = []
    for server, state, review_id in quarantined_in(db_path, tool, name):
        why = {
            "changed": "its definition changed since it was approved",
            "new": "it is new on that server and not reviewed yet",
            "rejected": "you rejected its current definition",
        }.get(state, state)
        lines.append(
            f"tool pin: on server {server!r} every call of {tool} is DENIED (rule builtin.tool_pin) before "
            f"the policy is asked: {why}. Review it: firewall-console tools (review {review_id})"
        )
    return lines


def _service(args: argparse.Namespace) -> int:
    from daemon import service

    home = p.home_dir()
    socket_path = args.socket or p.default_socket_path()
    unit_dir = args.unit_dir or service.default_unit_dir(home)
    log_path = os.path.join(p.default_state_dir(), "firewalld.log")
    files = service.rendered(unit_dir, socket_path, log_path)
    if getattr(args, "print", False):
        for f in files:
            print(f"# {f.path}\n{f.text}")
        return 0
    try:
        if args.command == "install-service":
            done = service.install(files, activate=not args.files_only)
        else:
            done = service.uninstall(files, activate=not args.files_only)
    except (service.ServiceError, OSError) as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    return 0


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(settings: DaemonSettings, detach: bool) -> None:
    handler: logging.Handler
    if detach:
        handler = logging.FileHandler(settings.log_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s firewalld[%(process)d] %(levelname)s %(message)s")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def _take_lock(path: str) -> int | None:
    """The single-instance lock: a held flock, not a pid file (a crash releases it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _remove_legacy_key(path: str) -> None:
    """Older versions sealed codes in the database with a key kept here: with the key gone, what
    they left in the database (and in its free pages) can never give a code back."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("could not remove %s (%s): remove it by hand", path, exc.strerror or exc)
        return
    log.info("removed %s: codes are no longer kept on disk", path)


def _owner_of(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def _loop_options() -> dict[str, object]:
    """uvloop when it is installed (a faster loop for the same asyncio code), else asyncio's own."""
    import importlib.util

    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def _activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us (``LISTEN_FDS``), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return socket.socket(fileno=3)


def run_daemon(settings: DaemonSettings, *, detach: bool) -> int:
    """Run firewalld until SIGTERM or SIGINT; returns the exit status."""
    os.umask(0o077)  # the database, key, log and socket are the user's alone
    try:
        p.ensure_private_dir(settings.state_dir)
        p.ensure_private_dir(os.path.dirname(settings.socket_path))
    except PermissionError as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    _setup_logging(settings, detach)
    lock = _take_lock(settings.lock_path)
    if lock is None:
        if detach:
            return 0
        print(
            f"firewalld: already running for {settings.socket_path} (pid {_owner_of(settings.lock_path)})",
            file=sys.stderr,
        )
        return 1
    import anyio

    from daemon.codes import CodeBook, make_undumpable
    from daemon.pending import PendingActions
    from daemon.server import Firewalld
    from daemon.store import Store, StoreBusy

    try:
        store = Store(settings.db_path)
    except StoreBusy as exc:  # a second daemon on another socket, same HOME
        if detach:
            log.error("%s", exc)  # the shim that started it reports the daemon as not answering
        else:
            print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    make_undumpable()  # the codes are in this process's memory, and only there
    _remove_legacy_key(settings.legacy_key_path)
    pending = PendingActions(
        store,
        CodeBook(),
        max_failures_per_minute=settings.max_failed_codes_per_minute,
        max_checks_per_hour=settings.max_failed_checks_per_hour,
    )
    reissued = pending.reissue()
    if reissued:
        log.info("%d open action(s) got new codes (codes do not survive a restart)", len(reissued))
    app = Firewalld(settings, store, pending)
    activated = _activated_socket()

    async def serve() -> None:
        from anyio.abc import SocketListener

        if activated is not None:
            listener = await SocketListener.from_socket(activated)
        else:
            # We hold the lock, so a socket file left here is stale: no live daemon owns it.
            listener = await anyio.create_unix_listener(settings.socket_path, mode=0o600)
        async with anyio.create_task_group() as tg:
            await tg.start(app.serve, listener)
            log.info("listening on %s (pid %d)", settings.socket_path, os.getpid())
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        app.reload()
                        continue
                    log.info("stopping on signal %d", signum)
                    await listener.aclose()  # no new connections; answer what is being answered
                    await app.drain(2.0)
                    tg.cancel_scope.cancel()
                    break

    # Modules and settings are loaded and live as long as the daemon: out of the collector's
    # sight, a full collection (7 ms over these 35,000 objects, every decision waiting behind it)
    # never walks them again.
    gc.freeze()
    try:
        anyio.run(serve, backend_options=_loop_options())
    except OSError as exc:
        print(f"firewalld: cannot listen on {settings.socket_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
        if activated is None:
            try:
                os.unlink(settings.socket_path)
            except OSError:
                pass
        os.close(lock)
    return 0
