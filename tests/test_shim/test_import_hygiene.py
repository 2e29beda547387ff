"""The shim's start-up budget: it must not import heavy modules (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "pydantic",
    "pydantic_settings",
    "textual",
    "anyio",
    "asyncio",
    "sqlite3",
    "daemon.policy",
    "daemon.config",
    "daemon.server",
    "daemon.state",
    "daemon.connections",
    "daemon.shim_requests",
    "daemon.console_requests",
    "daemon.audit_channel",
    "daemon.housekeeping",
    "ssl",
)


def test_shim_imports_nothing_heavy() -> None:
    """Importing the shim's entry point pulls in none of the daemon's or console's dependencies."""
    # shim.cli imports the rest lazily (after starting the target), so import all of it here.
    code = "import sys, shim.cli, shim.relay, shim.target; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "shim.firewall" in loaded  # the check looks at the right interpreter
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
