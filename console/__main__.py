"""``python -m console``: the same as the ``firewall-console`` command."""

from shim.guard import firewall_console

firewall_console()
