"""The shim's start-up budget: it must not import heavy modules (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("pydantic", "pydantic_settings", "textual", "anyio", "asyncio", "sqlite3", "ssl")
#: The daemon modules the shim may load: the wire code (DESIGN §2) and nothing of the daemon's own.
#: A list of what is allowed, not of what is not, so a module split out of the daemon later is
#: forbidden without anyone remembering to add it here.
WIRE = {
    "daemon",
    "daemon.protocol",
    "daemon.message_registry",
    "daemon.shim_messages",
    "daemon.console_messages",
    "daemon.paths",
}


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
    daemon_modules = {name for name in loaded if name == "daemon" or name.startswith("daemon.")}
    assert daemon_modules <= WIRE, daemon_modules - WIRE
