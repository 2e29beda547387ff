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
from typing import Any

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
    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground (the default)",
        epilog="example: firewalld run -v   (or just: firewalld)",
    )
    _add_run_options(run)
    explain = sub.add_parser(
        "explain",
        help="dry run: show which rule decides a tool call, without running anything",
        epilog="example: firewalld explain --name stripe refund_payment '{\"amount\": 150000}'",
    )
    explain.add_argument("tool", help="the tool name, as the agent would call it")
    explain.add_argument(
        "arguments", nargs="?", default="{}", help="the call's arguments as JSON (default {})"
    )
    explain.add_argument("--config", metavar="FILE", help=f"policy file (default: {_SEARCH})")
    explain.add_argument("--name", help="the server section to apply (servers.NAME)")
    explain.add_argument(
        "--session",
        metavar="ID",
        help="also weigh the grants made for this chat (S-...); the daemon's other grants always count",
    )
    check = sub.add_parser(
        "check-config",
        help="validate a policy file and exit",
        epilog="example: firewalld check-config ~/.config/mcp-action-firewall/firewall_config.json",
    )
    check.add_argument("config", metavar="FILE")
    _add_life_commands(sub)
    for name, verb in (("install-service", "write and enable"), ("uninstall-service", "disable and remove")):
        svc = sub.add_parser(
            name,
            help=f"{verb} the user service (systemd socket activation on Linux, a launchd agent on macOS)",
            epilog=f"examples:\n  firewalld {name}\n  firewalld {name} --files-only --unit-dir /tmp/units",
            formatter_class=argparse.RawDescriptionHelpFormatter,
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


_SEARCH = "./firewall_config.json, else the user's policy file (firewalld init), else the bundled one"


def _add_life_commands(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="write a starter policy (with notes) where the shim and the daemon look for it",
        epilog="examples:\n  firewalld init\n  firewalld init --force   # replace the one you have",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.add_argument("--path", metavar="FILE", help="write it here instead (give it to shims with --config)")
    status = sub.add_parser(
        "status",
        help="is the daemon running? pid, socket, uptime, sessions, pending actions, policy files "
        "(exit 3 when it is not running)",
        epilog="examples:\n  firewalld status\n  firewalld status --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--socket", metavar="PATH", help="socket path (default: derived from HOME)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    stop = sub.add_parser(
        "stop",
        help="stop the running daemon and wait until it has gone (exit 3 when none runs)",
        epilog="example: firewalld stop --timeout 30",
    )
    stop.add_argument("--socket", metavar="PATH", help="socket path (default: derived from HOME)")
    stop.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="how long to wait (default 10)"
    )


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
        return _explain(args.config, args.name, args.tool, args.arguments, args.session)
    if args.command == "check-config":
        return _explain(args.config, None, None, None)
    if args.command in ("install-service", "uninstall-service"):
        return _service(args)
    if args.command in ("init", "status", "stop"):
        from daemon import control

        if args.command == "init":
            return control.init(args.path, force=args.force)
        socket_path = args.socket or p.default_socket_path()
        if args.command == "status":
            return control.status(socket_path, as_json=args.json)
        return control.stop(socket_path, timeout=args.timeout)
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


def _explain(
    config: str | None, name: str | None, tool: str | None, arguments: str | None, session: str | None = None
) -> int:
    from daemon.config import ConfigError
    from daemon.policy import load_policy

    if config is None:
        from daemon.userconfig import find_policy

        config = find_policy(os.getcwd())
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
    lines = policy.explain(tool, args)
    if policy.decide(tool, args).action == "approve":
        granted = _explain_grants(config, name, session, tool, args)
        if granted[-1].startswith("decision:"):
            lines[-1] = lines[-1].replace("decision:", "verdict so far:", 1)
        lines += granted
    for line in lines:
        print(line)
    for line in _pin_lines(tool, name):
        print(line)
    return 0


def _explain_grants(
    config: str | None, name: str | None, session: str | None, tool: str, arguments: object
) -> list[str]:
    """What the running daemon's grants (read from its database) make of a call needing approval."""
    import time

    from daemon.grants import read_grants
    from daemon.settings import DaemonSettings

    path = os.path.abspath(config) if config is not None else None
    grants = [g for g in read_grants(DaemonSettings().db_path) if g.tool == tool]
    now = time.time()
    for grant in grants:
        if grant.scope == "chat" and session is None:
            continue
        if grant.applies(session or "", name, path, now) and grant.covers(arguments):
            return [f"grant {grant.describe()}: matches", f"decision: allow by grant {grant.grant_id}"]
    chat = "" if session else " (give --session ID to include this-chat grants)"
    return [f"grants: none of the daemon's {len(grants)} grant(s) for {tool!r} matches{chat}"]


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
    failed: list[str] = []
    try:
        if args.command == "install-service":
            done = service.install(files, activate=not args.files_only)
        else:
            done, failed = service.uninstall(files, activate=not args.files_only)
    except (service.ServiceError, OSError) as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    for line in failed:
        print(f"firewalld: {line}", file=sys.stderr)
    return 1 if failed else 0


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


class _StopSignals:
    """SIGTERM, SIGINT and SIGHUP on Python-level handlers installed once and never removed.

    anyio's signal receiver hands the signals back to their default actions when it closes, so a
    second Ctrl-C while the daemon closed its database printed a ``KeyboardInterrupt`` traceback,
    and a second SIGTERM killed it with status 143. Here the first SIGTERM or SIGINT starts the
    stop and every later one is ignored, until the process has exited 0; SIGHUP re-reads the
    policies. The handlers run on the main thread between bytecodes and only hand work to the loop.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._loop: Any = None
        self._stop: Any = None
        self._reload: Any = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def ignore(self) -> None:
        """From now to the exit, ignore them in the kernel: the interpreter's finalisation puts
        Python-level handlers back to the default actions (a late Ctrl-C would then kill us with
        status 130), but leaves ignored signals ignored."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)

    def attach(self, loop: Any, stop: Any, reload: Any) -> None:
        """Deliver to this event loop from now on (a stop asked for before it ran is delivered now)."""
        self._loop, self._stop, self._reload = loop, stop, reload
        if self.reason is not None:
            loop.call_soon(stop)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            if self.reason is None:
                self._call(self._reload)
            return
        self.request(f"signal {signum} ({signal.Signals(signum).name})")

    def request(self, reason: str) -> None:
        """Stop the daemon, once (as on SIGTERM)."""
        if self.reason is None:
            self.reason = reason
            self._call(self._stop)

    def _call(self, func: Any) -> None:
        if self._loop is not None and func is not None:
            try:
                self._loop.call_soon_threadsafe(func)
            except RuntimeError:  # the loop has closed: the daemon is on its way out anyway
                pass


#: Seconds between two checks that the daemon's installed files are still there.
INSTALL_CHECK = 1.0


def _installed_files() -> list[str]:
    """Files whose disappearance means this daemon was uninstalled (or its environment removed)."""
    import daemon

    package = os.path.dirname(os.path.abspath(daemon.__file__ or "."))
    return [os.path.join(package, "__init__.py"), os.path.join(package, "cli.py"), sys.executable]


async def _watch_install(stop: Any) -> None:
    """Stop the daemon once its installed files are gone: it could not import what it lazily needs,
    and the shim starts the newly installed one (if any) on demand."""
    import anyio

    files = _installed_files()
    while True:
        await anyio.sleep(INSTALL_CHECK)
        # A few stats of local files a second: cheaper than a thread hop.
        missing = next((f for f in files if not os.path.exists(f)), None)  # noqa: ASYNC240
        if missing is not None:
            log.error(
                "stopping: the installed files are gone (%s no longer exists): firewalld was "
                "uninstalled or its environment removed; a shim starts the installed one on demand",
                missing,
            )
            stop("its installed files were removed")
            return


def run_daemon(settings: DaemonSettings, *, detach: bool) -> int:
    """Run firewalld until SIGTERM or SIGINT; returns the exit status."""
    os.umask(0o077)  # the database, key, log and socket are the user's alone
    try:
        p.ensure_private_dir(settings.state_dir)
        p.ensure_private_dir(os.path.dirname(settings.socket_path))
    except PermissionError as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a parent that is a file, a read-only or full disk
        where = exc.filename or settings.state_dir
        print(f"firewalld: cannot create {where}: {exc.strerror or exc}", file=sys.stderr)
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
        import asyncio

        from anyio.abc import SocketListener

        stopping = anyio.Event()
        stops.attach(asyncio.get_running_loop(), stopping.set, app.reload)
        from daemon import failpoints

        if failpoints.armed("sigusr2.verdicts_changed"):  # a test's stand-in for a grant or pin change
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR2, app.verdicts_changed, "a grant or pin changed (test trigger)"
            )
        if activated is not None:
            listener = await SocketListener.from_socket(activated)
        else:
            # We hold the lock, so a socket file left here is stale: no live daemon owns it.
            listener = await anyio.create_unix_listener(settings.socket_path, mode=0o600)
        async with anyio.create_task_group() as tg:
            await tg.start(app.serve, listener)
            log.info("listening on %s (pid %d)", settings.socket_path, os.getpid())
            tg.start_soon(_watch_install, stops.request, name="install watch")
            await stopping.wait()
            log.info("stopping: %s", stops.reason)
            await listener.aclose()  # no new connections; answer what is being answered
            await app.drain(2.0)
            tg.cancel_scope.cancel()

    stops = _StopSignals()
    stops.install()  # from here to the exit: a second SIGTERM or SIGINT while stopping is ignored
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
        stops.ignore()
    return 0
