"""The agent side of the end-to-end tests: the official ``mcp`` SDK client, started as real clients start it.

Real MCP clients spawn a stdio server with a minimal environment (``minimal_env``) and talk to it with the
SDK's ``Client`` in one of two modes: ``"legacy"`` (the ``initialize`` handshake) or ``"auto"`` (the stateless
2026-07-28 protocol: ``server/discover`` first, version and capabilities in each request's ``_meta``).
``connect`` yields such a client; given a ``record_dir`` it puts ``tests/fixtures/tap.py`` in front of the
command, so a test can read the exact bytes that crossed the pipe (``to_client.bin``, ``from_client.bin``).
"""

from __future__ import annotations

import json
import os
import pwd
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult, TextContent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_SERVER = FIXTURES / "fixture_server.py"
TAP = FIXTURES / "tap.py"

Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")

# Long enough for a 10 MB result on a slow CI machine; short enough that a hang fails the test, not the run.
READ_TIMEOUT_SECONDS = 30.0


def minimal_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a real MCP client gives a stdio server: six variables, plus ``extra``.

    The SDK (``mcp.client.stdio.DEFAULT_INHERITED_ENV_VARS``) and the other clients pass only HOME, LOGNAME,
    PATH, SHELL, TERM and USER. All six are always set here, so what the server sees does not depend on the
    environment pytest happens to run in: the SDK merges its own copy of these six under ours.

    Args:
        home: The HOME to give the server (a temporary directory keeps per-user state out of the real one).
        **extra: Further variables, e.g. ``XDG_RUNTIME_DIR``.
    """
    account = pwd.getpwuid(os.getuid())
    env = {
        "HOME": str(home),
        "LOGNAME": account.pw_name,
        "PATH": os.environ.get("PATH", os.defpath),
        "SHELL": account.pw_shell or "/bin/sh",
        "TERM": "xterm-256color",
        "USER": account.pw_name,
    }
    env.update(extra)
    return env


def server_params(command: list[str], env: dict[str, str]) -> StdioServerParameters:
    """Parameters that make the SDK spawn ``command`` with exactly ``env``."""
    return StdioServerParameters(command=command[0], args=command[1:], env=env)


def fixture_command(effects: Path) -> list[str]:
    """The command that runs the fixture server, recording side effects in ``effects``."""
    return [sys.executable, str(FIXTURE_SERVER), "--effects", str(effects)]


def tapped(command: list[str], record_dir: Path) -> list[str]:
    """``command`` behind the byte tap, which records the session in ``record_dir``."""
    return [sys.executable, str(TAP), "--record", str(record_dir), "--", *command]


@asynccontextmanager
async def connect(
    command: list[str],
    *,
    mode: str,
    env: dict[str, str],
    record_dir: Path | None = None,
    read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
    elicitation_callback: Any = None,
    client_info: Any = None,
) -> AsyncIterator[Client]:
    """Spawn ``command`` over stdio and yield a connected SDK client.

    Leaving the context shuts the server down the SDK's way: stdin closed, then after 2 s SIGTERM to the
    process group, then after 2 s more SIGKILL.

    Args:
        command: The server command line (the shim, the fixture server, ...).
        mode: ``"legacy"`` or ``"auto"``, passed to ``Client(mode=...)``.
        env: The server's whole environment; build it with ``minimal_env``.
        record_dir: When given, run ``command`` behind ``tap.py`` recording into this directory.
        read_timeout_seconds: Per-request timeout, so a hang fails the test instead of stalling the run.
        elicitation_callback: The client's dialog (the SDK then declares elicitation).
        client_info: The ``Implementation`` the client names itself with.
    """
    if record_dir is not None:
        command = tapped(command, record_dir)
    client = Client(
        server_params(command, env),
        mode=mode,
        read_timeout_seconds=read_timeout_seconds,
        elicitation_callback=elicitation_callback,
        client_info=client_info,
    )
    async with client:
        yield client


def tool_text(result: CallToolResult) -> str:
    """The text content blocks of a tool result, concatenated in order."""
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def recorded_messages(recording: Path) -> list[dict[str, Any]]:
    """The JSON-RPC messages in a tap recording (``from_client.bin`` or ``to_client.bin``), in order."""
    return [json.loads(line) for line in recording.read_bytes().splitlines() if line.strip()]
