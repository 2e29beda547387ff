"""``mcp-action-firewall``: put this command in your MCP client's config in place of the server.

Parses the command line, starts the target and hands everything to :class:`shim.relay.Relay`,
which runs on the shim's own single-threaded event loop (:mod:`shim.loop`).
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys

DESCRIPTION = """\
Run an MCP server behind the MCP Action Firewall.

Every tools/call the agent makes is judged by the firewall daemon (firewalld, started on demand).
Allowed calls pass unchanged; dangerous ones are paused until the user reads the approval code in
`firewall-console` and types it into the chat; the agent then calls the injected firewall_confirm
tool and the paused call runs with exactly the arguments that were shown.
"""

EPILOG = """\
examples:
  mcp-action-firewall --target "npx -y @modelcontextprotocol/server-filesystem /tmp"
  mcp-action-firewall --name stripe --config ~/firewall_config.json -- uvx mcp-server-stripe
config lookup: --config FILE, else ./firewall_config.json, else the user's policy file
(~/.config/mcp-action-firewall/firewall_config.json, written by `firewalld init`), else the bundled defaults.
"""


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="mcp-action-firewall",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", metavar='"CMD ARGS"', help="the server command line, split like a shell")
    parser.add_argument("--name", help="the server's section in the policy file (servers.NAME)")
    parser.add_argument(
        "--strict-name",
        action="store_true",
        help="refuse to start when --name matches no server section of the policy (default: a warning)",
    )
    parser.add_argument("--config", metavar="FILE", help="the policy file (JSON)")
    parser.add_argument("--socket", metavar="PATH", help="firewalld's socket (default: derived from HOME)")
    parser.add_argument(
        "--decision-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the daemon's verdict before refusing the call (default 5)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=DEFAULT_HOLD,
        metavar="SECONDS",
        help=(
            f"keep a paused call open this long (default {DEFAULT_HOLD:g}; 0: never), so that approving it "
            "in firewall-console answers the agent's call with the real result; after it, the agent "
            "is told the call is paused and the code path works as always"
        ),
    )
    parser.add_argument(
        "--no-autostart", action="store_true", help="do not start firewalld when none is running"
    )
    parser.add_argument(
        "--no-leases",
        action="store_true",
        help="ask firewalld about every tool call, even one it has allowed for good (slower; for "
        "comparison and debugging)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more to stderr (-vv: debug)")
    parser.add_argument("--version", action="version", version="mcp-action-firewall 0.4.0")
    if "--" in argv:
        cut = argv.index("--")
        options, target = argv[:cut], argv[cut + 1 :]
    else:
        options, target = argv, []
    args = parser.parse_args(options)
    if args.target is not None and target:
        parser.error('give the server either as --target "CMD ARGS" or after --, not both')
    if args.target is not None:
        try:
            target = shlex.split(args.target)
        except ValueError as exc:
            parser.error(f"--target: {exc}")
    if not target:
        parser.error('no server to run: give --target "CMD ARGS" or -- CMD ARGS')
    if args.decision_timeout <= 0:
        parser.error("--decision-timeout must be positive")
    if not 0 <= args.hold <= MAX_HOLD:
        parser.error(
            f"--hold must be between 0 and {MAX_HOLD:g} seconds (clients give up on a call after about 60)"
        )
    if args.config is not None:
        args.config = os.path.abspath(os.path.expanduser(args.config))
        if not os.path.isfile(args.config):
            parser.error(f"--config: no such file: {args.config}")
    else:
        from daemon.userconfig import find_policy

        args.config = find_policy(os.getcwd())
    return args, target


def _name_refused(name: str, config: str | None, *, strict: bool) -> bool:
    """Warn on stderr when ``--name`` matches no server section (a misspelt name silently applies
    only the global rules); True when ``--strict-name`` refuses to start because of it."""
    from daemon.userconfig import server_sections, unknown_name

    warning = unknown_name(name, server_sections(config), config or "the bundled policy")
    if warning is None:
        return False
    if strict:
        sys.stderr.write(f"mcp-action-firewall: refusing to start (--strict-name): {warning}\n")
        return True
    sys.stderr.write(f"mcp-action-firewall: warning: {warning}\n")
    return False


#: Seconds a paused call is held open for an approval in the console: well under the 60 s after
#: which MCP clients (the SDKs' default request timeout) give up on a call.
DEFAULT_HOLD = 20.0
MAX_HOLD = 50.0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mcp-action-firewall``; returns the target's exit status."""
    args, target_argv = _parse(sys.argv[1:] if argv is None else argv)
    if args.name is not None and _name_refused(args.name, args.config, strict=args.strict_name):
        return 2
    # Start the server first and import the rest while it boots: the two overlap, so the agent
    # waits for the slower of them instead of for both (start-up is a budget).
    from shim.target import Target, TargetStartError

    try:
        target = Target(target_argv)
    except TargetStartError as exc:
        sys.stderr.write(f"mcp-action-firewall: {exc}\n")
        return exc.exit_code

    import logging

    from daemon import protocol as p
    from shim.daemon_link import DaemonLink
    from shim.loop import EventLoop
    from shim.relay import Relay

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        stream=sys.stderr,
        format=f"mcp-action-firewall[{args.name or target_argv[0]}]: %(message)s",
    )
    hello = p.Hello(
        role=p.ROLE_SHIM,
        server_name=args.name,
        config_path=args.config,
        target=target_argv,
        cwd=os.getcwd(),
        pid=os.getpid(),
        leases=not args.no_leases,
    )
    loop = EventLoop()
    link = DaemonLink(
        loop,
        args.socket or p.default_socket_path(),
        hello,
        autostart=not args.no_autostart,
        timeout=args.decision_timeout,
    )
    relay = Relay(loop, target, link, hold=args.hold)
    # What exists now lives as long as the shim: out of the collector's sight, a full collection
    # (about 1 ms over these 13,000 objects) never walks it again.
    gc.freeze()
    return relay.run()


def run() -> None:
    """Console-script wrapper: exit with the target's status, skipping interpreter clean-up."""
    from shim.guard import check

    check("mcp-action-firewall", "shim", "daemon")  # before anything of `daemon` is imported
    code = main()
    sys.stderr.flush()
    os._exit(code)
