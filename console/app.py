"""The interactive console (Textual). Placeholder until the TUI lands."""

from __future__ import annotations

import sys


def run_app(socket_path: str | None) -> int:
    """Run the TUI; returns the exit status."""
    sys.stderr.write(
        "firewall-console: the interactive console is not available yet; use `firewall-console pending`.\n"
    )
    return 2
