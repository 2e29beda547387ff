"""``python -m shim``: the same as the ``mcp-action-firewall`` command."""

from shim.cli import run

run()
