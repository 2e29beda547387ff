"""Sample daemon states, and the script that renders the console's screens to SVG for the docs.

``python -m console.screenshots [DIR]`` writes ``pending.svg``, ``detail-large-args.svg``,
``sessions.svg``, ``history.svg``, ``unreachable.svg`` and ``pending-light.svg`` into DIR
(default ``docs/screenshots``). The app is built with :func:`console.app.build_app`, fed a
:class:`~console.replay.ReplayBackend` and a frozen clock, so the pictures do not change from one
run to the next; the snapshot tests use the same samples.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

from console.app import FirewallConsole, build_app
from console.model import Action, AuditEntry, DaemonState, SessionInfo
from console.replay import ReplayBackend

#: The frozen "now" of every sample: 2026-03-02 09:41:00 UTC.
NOW = 1_772_444_460.0
SOCKET = "/home/ada/.local/state/mcp-action-firewall/firewalld.sock"
UNREACHABLE = (
    f"firewalld is not running (no answer on {SOCKET}: No such file or directory). "
    "Start it with `firewalld`, or use any MCP server through mcp-action-firewall."
)

_GITHUB = SessionInfo(
    session_id="S-7F3A91C2",
    server="github",
    client="claude-code 2.1.4 (MCP 2026-07-28)",
    target=("npx", "-y", "@modelcontextprotocol/server-github"),
    cwd="/home/ada/src/shop",
    pid=48211,
    connected=True,
    created=NOW - 3400,
    allowed=41,
    paused=3,
    denied=1,
    config_path="/home/ada/.config/mcp-action-firewall/firewall_config.json",
)
_POSTGRES = SessionInfo(
    session_id="S-0B44E1D9",
    server="postgres",
    client="Cursor 1.7.2 (MCP 2025-06-18)",
    target=("uvx", "mcp-server-postgres", "postgresql://localhost/shop"),
    cwd="/home/ada/src/shop",
    pid=48377,
    connected=True,
    created=NOW - 1900,
    allowed=12,
    paused=1,
    denied=0,
    config_path="/home/ada/src/shop/firewall_config.json",
    warnings=(
        "--name 'postgres' matches no server section of /home/ada/src/shop/firewall_config.json "
        "(its sections: 'database'), so only the global rules apply",
    ),
)
_STRIPE = SessionInfo(
    session_id="S-52C8A0FE",
    server="stripe",
    client="",
    target=("node", "/home/ada/mcp/stripe/dist/index.js"),
    cwd="/home/ada",
    pid=47003,
    connected=False,
    created=NOW - 8100,
    allowed=3,
    paused=0,
    denied=0,
)


def _action(
    session: SessionInfo,
    action_id: str,
    tool: str,
    arguments: object,
    age: float,
    left: float,
    *,
    code: str = "482916",
    attempts_left: int = 3,
) -> Action:
    keyword = "delete" if "delete" in tool else "merge" if "merge" in tool else "push"
    return Action(
        action_id=action_id,
        session_id=session.session_id,
        server=session.server,
        client=session.client,
        target=session.target,
        cwd=session.cwd,
        tool=tool,
        arguments_json=json.dumps(arguments, ensure_ascii=False),
        rule=f"global.block_keywords '{keyword}'",
        reason=f"Tool '{tool}' needs approval because its name contains the blocked keyword '{keyword}'.",
        created=NOW - age,
        deadline=NOW + left,
        attempts_left=attempts_left,
        code=code,
    )


def sample_state() -> DaemonState:
    """Three sessions and three actions waiting, one of them about to expire."""
    actions = (
        _action(_GITHUB, "A-1F2E3D4C", "delete_repository", {"owner": "ada", "repo": "shop-legacy"}, 28, 272),
        _action(
            _POSTGRES,
            "A-9C01B7E5",
            "execute_sql_delete",
            {
                "sql": "DELETE FROM orders WHERE created_at < now() - interval '90 days' "
                "RETURNING id, total_cents;"
            },
            277,
            23,
            code="073551",
            attempts_left=2,
        ),
        _action(
            _GITHUB,
            "A-3D7700AA",
            "merge_pull_request",
            {"owner": "ada", "repo": "shop", "pull_number": 418, "merge_method": "squash"},
            169,
            131,
            code="650284",
        ),
    )
    return DaemonState((_GITHUB, _POSTGRES, _STRIPE), actions)


def large_arguments_state() -> DaemonState:
    """One action whose arguments are a whole file: long lines, nesting, odd characters."""
    body = "\n".join(
        f"def handler_{n}(event, context):  # line {n}: " + "x" * (40 + n * 7) for n in range(1, 40)
    )
    arguments = {
        "owner": "ada",
        "repo": "shop",
        "branch": "main",
        "message": "Rewrite the payment handlers\u202e (a right-to-left override hides here)",
        "files": [
            {"path": "payments/handlers.py", "content": body},
            {"path": "payments/config.json", "content": json.dumps({"retries": 3, "live": True})},
        ],
    }
    action = _action(_GITHUB, "A-5E6F7A8B", "push_files", arguments, 12, 288, code="915037")
    return DaemonState((_GITHUB,), (action,))


def sample_history() -> tuple[AuditEntry, ...]:
    """An audit log with one of each kind of row, newest first."""
    rows = [
        (
            "paused",
            _GITHUB,
            "delete_repository",
            "A-1F2E3D4C",
            "approve",
            "global.block_keywords 'delete'",
            "",
        ),
        ("decision", _GITHUB, "get_file_contents", "", "allow", "global.allow_prefixes 'get_'", ""),
        (
            "paused",
            _POSTGRES,
            "execute_sql_delete",
            "A-9C01B7E5",
            "approve",
            "global.block_keywords 'delete'",
            "",
        ),
        ("outcome", _GITHUB, "", "A-0A1B2C3D", "ok", "", '{"content":[{"type":"text","text":"merged"}]}'),
        (
            "confirm_ok",
            _GITHUB,
            "merge_pull_request",
            "A-0A1B2C3D",
            "allow",
            "global.block_keywords 'merge'",
            "",
        ),
        ("confirm_failed", _GITHUB, "", "A-0A1B2C3D", "", "", "wrong code"),
        ("denied", _STRIPE, "create_refund", "A-77E1D0C4", "", "", "console"),
        ("expired", _POSTGRES, "drop_table", "A-6B5A4F3E", "", "", ""),
        ("decision", _POSTGRES, "query", "", "allow", "servers.postgres.rules[0]", ""),
        ("decision", _STRIPE, "delete_customer", "", "deny", "servers.stripe.rules[2]", ""),
        ("session_close", _STRIPE, "", "", "", "", ""),
        ("session_open", _POSTGRES, "", "", "", "", '{"target": ["uvx", "mcp-server-postgres"]}'),
        (
            "session_open",
            _GITHUB,
            "",
            "",
            "",
            "",
            '{"target": ["npx", "-y", "@modelcontextprotocol/server-github"]}',
        ),
    ]
    return tuple(
        AuditEntry(
            len(rows) - n,
            NOW - 30 - 170 * n,
            event,
            s.session_id,
            s.server,
            tool,
            aid,
            decision,
            rule,
            detail,
        )
        for n, (event, s, tool, aid, decision, rule, detail) in enumerate(rows)
    )


def sample_app(
    state: DaemonState | None = None, *, history: tuple[AuditEntry, ...] = (), unreachable: bool = False
) -> FirewallConsole:
    """The production app, fed a recorded state and a frozen clock."""
    backend = ReplayBackend(
        state, history, socket_path=SOCKET, unreachable=UNREACHABLE if unreachable else None
    )
    return build_app(SOCKET, backend=backend, clock=lambda: NOW)


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the workers that fetch data have finished and the screen has taken in what they posted.

    (Not the one waiting for an answer in a dialog: that one finishes when the user answers.)
    """
    for _ in range(2):  # a message handled in the first round may start another fetch
        fetching = [w for w in pilot.app.workers if w.group != "ask"]
        if fetching:  # (an empty list would mean "all workers")
            await pilot.app.workers.wait_for_complete(fetching)
        await pilot.pause()


#: name -> (app factory, terminal size, what to do before the picture)
Shot = tuple[Callable[[], FirewallConsole], tuple[int, int], Callable[[Pilot[None]], Awaitable[None]]]


async def _nothing(pilot: Pilot[None]) -> None:
    await settle(pilot)


async def _history(pilot: Pilot[None]) -> None:
    await settle(pilot)
    await pilot.press("h")
    await settle(pilot)


async def _sessions(pilot: Pilot[None]) -> None:
    await settle(pilot)
    await pilot.press("s")
    await settle(pilot)


async def _light(pilot: Pilot[None]) -> None:
    pilot.app.theme = "textual-light"
    await settle(pilot)


SHOTS: dict[str, Shot] = {
    "pending": (lambda: sample_app(sample_state()), (110, 32), _nothing),
    "detail-large-args": (lambda: sample_app(large_arguments_state()), (110, 32), _nothing),
    "sessions": (lambda: sample_app(sample_state()), (140, 20), _sessions),
    "history": (lambda: sample_app(sample_state(), history=sample_history()), (110, 24), _history),
    "unreachable": (lambda: sample_app(unreachable=True), (80, 24), _nothing),
    "pending-light": (lambda: sample_app(sample_state()), (110, 32), _light),
}


async def render(name: str, directory: Path) -> Path:
    """Render one screen to ``directory/name.svg``."""
    make, size, prepare = SHOTS[name]
    app = make()
    async with app.run_test(size=size) as pilot:
        await prepare(pilot)
        path = directory / f"{name}.svg"
        path.write_text(app.export_screenshot(title=f"firewall-console: {name}"))
    return path


def main(argv: list[str] | None = None) -> int:
    """Write every screenshot; prints where."""
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "docs/screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TZ"] = "UTC"  # the history's times must not depend on where this runs
    time.tzset()
    for name in SHOTS:
        sys.stdout.write(f"{asyncio.run(render(name, directory))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
