"""mcp-action-firewall: the stdio shim that sits between an MCP client and a server.

Stdlib threads and msgpack only: it is spawned once per server per chat, so start-up is a budget.
"""

#: The install guard's marker (:mod:`shim.guard`).
MCP_ACTION_FIREWALL = "0.4.0"
