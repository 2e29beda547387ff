"""firewall-console: where the human sees pending actions and their codes, and denies."""

#: The install guard's marker (:mod:`shim.guard`).
MCP_ACTION_FIREWALL = "0.4.0"
