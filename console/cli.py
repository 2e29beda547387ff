"""``firewall-console``: the approval console, and its scriptable subcommands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from console import grant_cli
from console.client import ConsoleClient, ConsoleError
from console.model import pretty_arguments, visible
from console.pins import ToolPin, diff_lines, flags, pin_from_wire

DESCRIPTION = """\
See what the MCP Action Firewall has paused, with the exact arguments and the approval code.
To approve an action, type its code into the chat with the agent (or approve it here while its chat
holds the call open); to refuse it, deny it here.
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
    pending = sub.add_parser(
        "pending",
        help="list sessions (with their policy file) and pending actions with their codes",
        epilog="examples:\n  firewall-console pending\n  firewall-console pending --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    deny = sub.add_parser(
        "deny",
        help="deny a pending action (the agent's confirm will then fail)",
        epilog="example: firewall-console deny A-1F2E3D4C A-7229D798",
    )
    deny.add_argument("action_id", metavar="ID", nargs="+", help="action id(s), e.g. A-1F2E3D4C")
    show = sub.add_parser(
        "show",
        help="show one pending action's full arguments (listings cut big ones)",
        epilog="examples:\n  firewall-console show A-1F2E3D4C\n  firewall-console show A-1F2E3D4C --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("action_id", metavar="ID", help="action id, e.g. A-1F2E3D4C")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    tools = sub.add_parser(
        "tools",
        help="pinned tool definitions per server, and the changes waiting for review (with their diff)",
        description="Each server's tools as firewalld pinned them, and every definition that is hidden from "
        "the agent until you review it: a changed one (with a diff against the approved one), a new one, or "
        "one you rejected. What looks aimed at the model (hidden characters, instructions) is flagged.",
        epilog="examples: firewall-console tools; firewall-console tools --server github --json",
    )
    tools.add_argument("--server", help="only this server (its --name, or its command line)")
    tools.add_argument("--json", action="store_true", help="machine-readable output")
    for verb, what in (
        ("accept", "pin the new definition: the tool is shown and callable again"),
        ("reject", "keep the tool hidden from the agent and its calls denied"),
    ):
        review = sub.add_parser(
            verb,
            help=f"{what} (by review id, or SERVER TOOL)",
            description=f"{verb.capitalize()} a tool definition waiting for review: {what}. "
            "Name it by its review id (see `firewall-console tools`) or by server and tool.",
            epilog=f"examples: firewall-console {verb} R-1A2B3C4D; "
            f"firewall-console {verb} github create_issue",
        )
        review.add_argument(
            "what", metavar="ID | SERVER TOOL", nargs="+", help="a review id, or server and tool"
        )
    log = sub.add_parser(
        "log",
        help="show the audit log, newest first",
        epilog="examples:\n  firewall-console log --limit 20\n  firewall-console log --server stripe --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    log.add_argument("--json", action="store_true", help="machine-readable output")
    log.add_argument("--limit", type=int, default=50, metavar="N", help="how many rows (default 50)")
    log.add_argument("--session", help="only this session id")
    log.add_argument("--server", help="only this server name")
    log.add_argument("--tool", help="only this tool")
    grant_cli.add_commands(sub)
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
                _print_pending(client.pending(), as_json=args.json)
            elif args.command == "show":
                _print_arguments(client, args.action_id, as_json=args.json)
            elif args.command == "approve":
                emit(client.approve(args.action_id))
            elif args.command == "deny":
                for action_id in args.action_id:
                    emit(client.deny(action_id))
            elif args.command == "tools":
                _print_pins(client.pins(args.server), as_json=args.json)
            elif args.command in ("accept", "reject"):
                review_id = _review_id(client, args.what)
                emit(client.review_tool(review_id, args.command == "accept"))
            elif args.command == "log":
                if args.limit < 1:
                    raise ConsoleError("--limit must be at least 1")
                rows = client.log(args.limit, args.session, args.server, args.tool)
                _print_log(rows, as_json=args.json)
            else:
                grant_cli.run(client, args, emit, _emit_json)
    except ConsoleError as exc:
        emit(f"firewall-console: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `firewall-console log | head`
        return 0
    return 0


def emit(*lines: str, file: TextIO | None = None) -> None:
    """Write ``lines`` for a person to read, each ended by a newline: the only way this module writes.

    Every line passes through :func:`console.model.visible`, so nothing that came from an agent
    or a server (a tool name, an argument, a client name, an error that quotes them) can move the
    cursor, recolour or rewrite the screen; a newline inside a line is spelt out too, so no value
    can start a line of its own that passes for another action's. JSON output is pure ASCII
    (``ensure_ascii``), on which :func:`visible` changes nothing: it stays exact.
    """
    out = sys.stdout if file is None else file
    out.write("".join(visible(line) + "\n" for line in lines or ("",)))


def _emit_json(value: object) -> None:
    # ensure_ascii: every non-ASCII character as an escape. Parsed back it is the same value, and
    # on a terminal no control, bidi override or lone surrogate is written raw.
    emit(*json.dumps(value, indent=2, ensure_ascii=True).split("\n"))


def _size(count: int) -> str:
    return f"{count:,} bytes ({count / 1048576:.1f} MiB)" if count >= 1048576 else f"{count:,} bytes"


def _print_pending(listing: Any, *, as_json: bool) -> None:
    sessions: list[dict[str, Any]] = listing.sessions
    actions: list[dict[str, Any]] = listing.actions
    if as_json:
        for action in actions:
            shown = action.pop("arguments_json")
            if action.get("arguments_cut"):
                action["arguments"] = None  # `firewall-console show ID --json` has them
                action["arguments_preview"] = shown
            else:
                action["arguments"] = json.loads(shown)
        _emit_json(
            {
                "sessions": sessions,
                "actions": actions,
                "paused_bytes": listing.paused_bytes,
                "max_paused_bytes": listing.max_paused_bytes,
            }
        )
        return
    live = [s for s in sessions if s["connected"]]
    emit(f"{len(live)} connected session(s), {len(actions)} action(s) waiting for approval")
    if listing.max_paused_bytes:
        held, limit = _size(listing.paused_bytes), _size(listing.max_paused_bytes)
        emit(f"paused arguments held: {held} of at most {limit}")
    for s in live:
        emit(
            f"  {s['session_id']}  {s['server'] or '-':12} {s['client'] or '(unknown client)'}  "
            f"{' '.join(s['target'])}"
        )
        section = f", server section {s['server']!r}" if s["server"] else ""
        emit(f"      policy: {s.get('config_path') or '(bundled defaults)'}{section}")
        for warning in s.get("warnings") or []:
            emit(f"      warning: {warning}")
    now = time.time()
    for a in actions:
        left = max(0, int(a["deadline"] - now))
        emit()
        emit(f"{a['action_id']}  {a['tool']}  (server {a['server'] or '-'}, session {a['session_id']})")
        emit(
            f"  code:      {a['code']}    expires in {left // 60}m{left % 60:02d}s, "
            f"{a['attempts_left']} attempt(s) left"
        )
        emit(f"  rule:      {a['rule']}")
        if a.get("arguments_cut"):
            emit(
                f"  arguments: CUT, {_size(a['arguments_bytes'])}, sha256 {a['arguments_sha256']}; "
                f"see them all with `firewall-console show {a['action_id']}`"
            )
            emit(f"  they begin: {a['arguments_json']}…")
        else:
            emit(f"  arguments: {a['arguments_json']}")


def _print_arguments(client: ConsoleClient, action_id: str, *, as_json: bool) -> None:
    full = client.arguments(action_id)
    tools = [a["tool"] for a in client.pending().actions if a["action_id"] == action_id]
    tool = tools[0] if tools else ""
    if as_json:
        _emit_json(
            {
                "action_id": full.action_id,
                "tool": tool,
                "arguments_bytes": full.size,
                "arguments_sha256": full.sha256,
                "arguments": json.loads(full.text),
            }
        )
        return
    emit(f"{full.action_id}  {tool}  arguments: {_size(full.size)}, sha256 {full.sha256}")
    # Outside strings json.dumps writes only ASCII: these newlines are its indentation.
    emit(*pretty_arguments(full.text).split("\n"))


def _print_log(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    """The audit log, newest first, escaped like :func:`_print_pending`."""
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        emit("No audit rows match.", file=sys.stderr)
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        what = " ".join(str(x) for x in (r["tool"], r["action_id"], r["decision"], r["rule"]) if x)
        emit(f"{stamp}  {r['event']:14} {r['session_id'] or '-':10} {r['server'] or '-':10} {what}")


def _review_id(client: ConsoleClient, what: list[str]) -> str:
    """The review id named on the command line: given as such, or found by server and tool."""
    if len(what) == 1:
        return what[0]
    if len(what) != 2:
        raise ConsoleError("name one review id, or a server and a tool")
    server, tool = what
    pins = [pin_from_wire(raw) for raw in client.pins(server)]
    found = [pin for pin in pins if pin.tool == tool]
    if not pins:
        raise ConsoleError(f"no server {server!r} has pinned tools (see `firewall-console tools`)")
    if not found:
        raise ConsoleError(f"server {server!r} has no tool {tool!r}")
    if found[0].state == "pinned":
        raise ConsoleError(f"{tool} on {server} has no definition waiting for review")
    return found[0].review_id


def _print_pins(raw: list[dict[str, Any]], *, as_json: bool) -> None:
    """Pins per server: reviews with their flags and diff, then the pinned tools."""
    pins = [pin_from_wire(r) for r in raw]
    names: dict[str, list[str]] = {}
    for pin in pins:
        names.setdefault(pin.server, []).append(pin.tool)
    if as_json:
        for entry, pin in zip(raw, pins, strict=True):
            if pin.state != "pinned":
                entry["flags"] = flags(pin.seen, names[pin.server])
                entry["diff"] = diff_lines(pin)
        _emit_json(raw)
        return
    if not pins:
        emit("No tool is pinned yet: firewalld pins a server's tools the first time it lists them.")
    for server in sorted(names):
        of_server = [pin for pin in pins if pin.server == server]
        waiting = [pin for pin in of_server if pin.state != "pinned"]
        emit(f"server {server}: {len(of_server) - len(waiting)} pinned, {len(waiting)} hidden from the agent")
        for pin in waiting:
            _print_review(pin, names[server])
        pinned = sorted(pin.tool for pin in of_server if pin.state == "pinned")
        if pinned:
            emit(f"  pinned: {', '.join(pinned)}")


def _print_review(pin: ToolPin, names: list[str]) -> None:
    what = {
        "changed": "CHANGED since approved",
        "new": "NEW, never approved",
        "rejected": "REJECTED by you (hidden and denied)",
    }.get(pin.state, pin.state)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(pin.updated))
    emit(f"  {pin.review_id}  {pin.tool}  {what}  ({stamp})")
    for flag in flags(pin.seen, names):
        emit(f"    FLAG: {flag}")
    if pin.cut:
        emit("    (a definition is over 64 KiB: the diff shows its beginning)")
    emit(*("    " + line for line in diff_lines(pin)))
    if pin.under_review:
        emit(
            f"    accept: firewall-console accept {pin.review_id}    "
            f"reject: firewall-console reject {pin.review_id}"
        )
