"""firewalld: the per-user daemon that owns policy, pending actions, codes and the audit log.

This package's ``__init__`` imports nothing, so the shim can import :mod:`daemon.protocol` cheaply.
"""

#: The install guard's marker (:mod:`shim.guard`): python-daemon also installs a top-level
#: ``daemon`` package, and pip lets the two overwrite each other's ``__init__`` in one environment.
MCP_ACTION_FIREWALL = "0.4.0"
