"""``firewall-console``: the approval console, and its scriptable subcommands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from console.client import ConsoleClient, ConsoleError
from console.model import command_line, json_text, visible

DESCRIPTION = """\
See what the MCP Action Firewall has paused, with the exact arguments and the approval code.
To approve an action, type its code into the chat with the agent; to refuse it, deny it here.
Without a command, opens the interactive console.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firewall-console", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--socket", metavar="PATH", help="firewalld's socket (default: derived from HOME)")
    parser.add_argument(
        "--desktop-notify",
        action="store_true",
        help="interactive console: also announce new actions with a desktop notification "
        "(notify-send or osascript; never shows the code)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pending = sub.add_parser("pending", help="list sessions and pending actions with their codes")
    pending.add_argument("--json", action="store_true", help="machine-readable output")
    approve = sub.add_parser(
        "approve",
        help="approve a held action: it runs now and its chat gets the real result",
        description="Approve a paused action that its chat still holds open (the shim holds a paused "
        "call for --hold seconds while a console is open). It runs at once, and the agent's original "
        "call gets the real result. Once the hold is over, approve by typing the code into the chat.",
        epilog="example: firewall-console approve A-1F2E3D4C",
    )
    approve.add_argument("action_id", metavar="ID", help="the action id, e.g. A-1F2E3D4C")
    deny = sub.add_parser("deny", help="deny a pending action (the agent's confirm will then fail)")
    deny.add_argument("action_id", metavar="ID", nargs="+", help="action id(s), e.g. A-1F2E3D4C")
    log = sub.add_parser("log", help="show the audit log, newest first")
    log.add_argument("--json", action="store_true", help="machine-readable output")
    log.add_argument("--limit", type=int, default=50, metavar="N", help="how many rows (default 50)")
    log.add_argument("--session", help="only this session id")
    log.add_argument("--server", help="only this server name")
    log.add_argument("--tool", help="only this tool")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``firewall-console``."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        from console.app import run_app

        return run_app(args.socket, desktop_notifications=args.desktop_notify)
    try:
        with ConsoleClient(args.socket) as client:
            if args.command == "pending":
                snapshot = client.pending()
                _print_pending(snapshot.sessions, snapshot.actions, as_json=args.json)
            elif args.command == "approve":
                print(visible(client.approve(args.action_id)))
            elif args.command == "deny":
                for action_id in args.action_id:
                    print(visible(client.deny(action_id)))
            elif args.command == "log":
                if args.limit < 1:
                    raise ConsoleError("--limit must be at least 1")
                rows = client.log(args.limit, args.session, args.server, args.tool)
                _print_log(rows, as_json=args.json)
    except ConsoleError as exc:
        print(f"firewall-console: {visible(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `firewall-console log | head`
        return 0
    return 0


def _print_pending(sessions: list[dict[str, Any]], actions: list[dict[str, Any]], *, as_json: bool) -> None:
    """Sessions and waiting actions. Every value the daemon sent is printed through
    :func:`~console.model.visible` (text) or :func:`~console.model.json_text` (``--json``): a tool
    name, a client name or an argument holding terminal escapes cannot repaint the screen."""
    if as_json:
        for action in actions:
            action["arguments"] = json.loads(action.pop("arguments_json"))
        print(json_text({"sessions": sessions, "actions": actions}))
        return
    live = [s for s in sessions if s["connected"]]
    print(f"{len(live)} connected session(s), {len(actions)} action(s) waiting for approval")
    for s in live:
        print(
            f"  {visible(s['session_id'])}  {visible(s['server'] or '-'):12} "
            f"{visible(s['client'] or '(unknown client)')}  {command_line(s['target'])}"
        )
    now = time.time()
    for a in actions:
        left = max(0, int(a["deadline"] - now))
        print()
        print(
            f"{visible(a['action_id'])}  {visible(a['tool'])}  "
            f"(server {visible(a['server'] or '-')}, session {visible(a['session_id'])})"
        )
        print(
            f"  code:      {visible(a['code'])}    expires in {left // 60}m{left % 60:02d}s, "
            f"{a['attempts_left']} attempt(s) left"
        )
        print(f"  rule:      {visible(a['rule'])}")
        print(f"  arguments: {visible(a['arguments_json'])}")


def _print_log(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    """The audit log, newest first, escaped like :func:`_print_pending`."""
    if as_json:
        print(json_text(rows))
        return
    if not rows:
        print("No audit rows match.", file=sys.stderr)
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        what = " ".join(str(x) for x in (r["tool"], r["action_id"], r["decision"], r["rule"]) if x)
        print(
            f"{stamp}  {visible(r['event']):14} {visible(r['session_id'] or '-'):10} "
            f"{visible(r['server'] or '-'):10} {visible(what)}"
        )
