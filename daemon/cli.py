"""``firewalld``: run the daemon, or ask the policy what it would do with a call.

This module holds the command line and dispatches: :mod:`daemon.runner` runs the daemon,
:mod:`daemon.explain` answers ``explain`` and ``check-config``, :mod:`daemon.control` the life
commands and :mod:`daemon.service` the service files.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

from daemon import protocol as p
from daemon.settings import DaemonSettings

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
        from daemon.explain import _explain

        return _explain(args.config, args.name, args.tool, args.arguments, args.session)
    if args.command == "check-config":
        from daemon.explain import _explain

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
    from daemon.runner import run_daemon

    return run_daemon(settings, detach=args.detach)


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
