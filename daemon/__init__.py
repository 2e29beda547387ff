"""firewalld: the per-user daemon that owns policy, pending actions, codes and the audit log.

This package's ``__init__`` imports nothing, so the shim can import :mod:`daemon.protocol` cheaply.
"""
