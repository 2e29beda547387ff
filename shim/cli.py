"""``mcp-action-firewall``: put this command in your MCP client's config in place of the server.

Threads, not asyncio: importing asyncio alone costs more than the whole start-up budget. One
thread reads the agent, one reads the target, one talks to the daemon; the main thread waits for
the end and runs the shutdown sequence.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from types import FrameType

from daemon import protocol as p
from shim.daemon_link import DaemonLink
from shim.firewall import Firewall
from shim.lines import LineReader, LineTooLong, LineWriter
from shim.target import Target, TargetStartError

log = logging.getLogger("mcp-action-firewall")

#: Lines from the agent must be parsed whole before they are judged, so they are bounded.
MAX_CLIENT_LINE = 64 * 1024 * 1024
#: Lines from the target are only relayed; the bound just keeps a runaway server from eating memory.
MAX_TARGET_LINE = 256 * 1024 * 1024

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
config lookup: --config FILE, else ./firewall_config.json, else the bundled defaults.
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
        "--no-autostart", action="store_true", help="do not start firewalld when none is running"
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
    if args.config is not None:
        args.config = os.path.abspath(os.path.expanduser(args.config))
        if not os.path.isfile(args.config):
            parser.error(f"--config: no such file: {args.config}")
    elif os.path.isfile("firewall_config.json"):
        args.config = os.path.abspath("firewall_config.json")
    return args, target


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mcp-action-firewall``; returns the target's exit status."""
    args, target_argv = _parse(sys.argv[1:] if argv is None else argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level,
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
    )
    link = DaemonLink(
        args.socket or p.default_socket_path(),
        hello,
        autostart=not args.no_autostart,
        timeout=args.decision_timeout,
    )
    try:
        target = Target(target_argv)
    except TargetStartError as exc:
        log.error("%s", exc)
        return exc.exit_code
    link.start()
    return _relay(target, link)


def _relay(target: Target, link: DaemonLink) -> int:
    to_client = LineWriter(sys.stdout.fileno())
    to_target = LineWriter(target.stdin_fd)
    firewall = Firewall(to_client, to_target, link)
    wake = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        target.signal(signum)
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def read_client() -> None:
        for line in LineReader(sys.stdin.fileno(), MAX_CLIENT_LINE).lines():
            if isinstance(line, LineTooLong):
                log.error("dropped a message from the agent: %s (limit %d)", line, MAX_CLIENT_LINE)
            else:
                firewall.on_client_line(line)
        log.info("the agent closed stdin; stopping the server")
        to_target.close()
        wake.set()

    def read_target() -> None:
        for line in LineReader(target.stdout_fd, MAX_TARGET_LINE).lines():
            if isinstance(line, LineTooLong):
                log.error("dropped a message from the server: %s (limit %d)", line, MAX_TARGET_LINE)
            else:
                firewall.on_target_line(line)
        firewall.on_target_exit()
        wake.set()

    threading.Thread(target=read_client, name="agent-reader", daemon=True).start()
    target_reader = threading.Thread(target=read_target, name="target-reader", daemon=True)
    target_reader.start()

    wake.wait()
    to_target.close()
    code = target.stop()
    target_reader.join(timeout=1.0)  # relay what the server said before it went
    link.close()
    if received:
        log.info("stopped by signal %d", received[0])
    return code


def run() -> None:
    """Console-script wrapper: exit fast, without waiting for reader threads stuck in read()."""
    code = main()
    sys.stderr.flush()
    os._exit(code)
