"""``firewall-console grant / grants / revoke``: grants from the command line.

A grant approves a paused action with a scope wider than this one call (see the README's
"Grants"); ``always`` prints the change to the policy file and asks before it is made.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from console.client import ConsoleClient, ConsoleError

#: How long a timed grant lasts unless ``--minutes`` says otherwise.
DEFAULT_MINUTES = 30.0


def add_commands(sub: Any) -> None:
    """Add ``grant``, ``grants`` and ``revoke`` to the subcommand parsers."""
    grant = sub.add_parser(
        "grant",
        help="approve a paused action for more than this call: this chat, matching arguments, or always",
        description="Approve a paused action and let later calls like it through without asking. "
        "--scope chat: this tool in this chat, until the chat ends. --scope args: this tool, in every "
        "chat of its server, when the arguments match --equals/--under, for --minutes. --scope always: "
        "an 'approved' rule in the chat's policy file (the change is shown first). --scope once: "
        "just this call (as `approve`). A grant never lets through what the policy denies.",
        epilog="examples:\n  firewall-console grant A-1F2E3D4C --scope chat\n"
        "  firewall-console grant A-1F2E3D4C --scope args --under path=/home/me/project --minutes 15\n"
        "  firewall-console grant A-1F2E3D4C --scope always --equals currency='\"eur\"'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grant.add_argument("action_id", metavar="ID", help="the paused action, e.g. A-1F2E3D4C")
    grant.add_argument("--scope", choices=("once", "chat", "args", "always"), required=True)
    grant.add_argument(
        "--equals",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="argument KEY must be exactly this JSON value (a bare word is taken as a string)",
    )
    grant.add_argument(
        "--under", action="append", default=[], metavar="KEY=DIR", help="argument KEY is a path inside DIR"
    )
    grant.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="how long an args grant lasts")
    grant.add_argument("--yes", action="store_true", help="always: make the change without asking")
    grants = sub.add_parser("grants", help="list the live grants", epilog="example: firewall-console grants")
    grants.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = sub.add_parser(
        "revoke", help="end a grant now", epilog="example: firewall-console revoke G-0A1B2C3D"
    )
    revoke.add_argument("grant_id", metavar="ID", nargs="+", help="grant id(s), e.g. G-0A1B2C3D")


def matches_of(equals: list[str], under: list[str]) -> list[dict[str, Any]]:
    """``KEY=VALUE`` options as the daemon's argument matches."""
    out: list[dict[str, Any]] = []
    for option, test in [(e, "equals") for e in equals] + [(u, "under") for u in under]:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConsoleError(f"--{test} {option!r}: write KEY=VALUE")
        parsed: Any = value
        if test == "equals":
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value  # a bare word: the string
        out.append({"key": key, test: parsed})
    return out


def run(client: ConsoleClient, args: argparse.Namespace, emit: Any, emit_json: Any) -> None:
    """Run one of the commands :func:`add_commands` added."""
    if args.command == "grants":
        listed = client.grants()
        if args.json:
            emit_json(listed)
            return
        if not listed:
            emit("No grants.")
        for g in listed:
            made = time.strftime("%Y-%m-%d %H:%M", time.localtime(g["created"]))
            emit(f"{g['description']}  (made {made} from {g['action_id']}, used {g['uses']} time(s))")
    elif args.command == "revoke":
        for grant_id in args.grant_id:
            emit(client.revoke(grant_id))
    elif args.command == "grant":
        matches = matches_of(args.equals, args.under)
        base, scope = "", args.scope
        if scope == "always":
            preview = client.preview_rule(args.action_id, matches)
            emit(f"This adds a rule to {preview.path}:", "", *preview.diff.rstrip("\n").split("\n"))
            if not args.yes:
                if not sys.stdin.isatty():
                    raise ConsoleError("not changed: run it again with --yes to make this change")
                if input("Make this change? [y/N] ").strip().lower() not in ("y", "yes"):
                    raise ConsoleError("not changed")
            base = preview.base_sha256
        emit(client.grant(args.action_id, scope, minutes=args.minutes, matches=matches, base_sha256=base))
