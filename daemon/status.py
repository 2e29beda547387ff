"""What a console is told about the daemon itself (``firewalld status``) and about each session's
policy (which file, which server section, and what is wrong with them)."""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from daemon import MCP_ACTION_FIREWALL
from daemon import protocol as p
from daemon.userconfig import unknown_name

if TYPE_CHECKING:
    from daemon.policies import PolicyCache
    from daemon.sessions import Session
    from daemon.state import DaemonState


def session_warnings(policies: PolicyCache, session: Session) -> list[str]:
    """Problems with the session's policy worth showing beside it: a ``--name`` that matches no
    server section, or a policy file that does not load (every call then is denied)."""
    policy, error = policies.get(session.config_path, session.server)
    warnings: list[str] = []
    if error:
        warnings.append(f"the policy file does not load, so every call is denied: {error.splitlines()[0]}")
    if policy is not None:
        where = session.config_path or "the bundled policy"
        name = unknown_name(session.server, policy.server_sections, where)
        if name:
            warnings.append(name)
    return warnings


def session_views(app: DaemonState) -> list[dict[str, Any]]:
    """The sessions of a listing, each with its policy file and warnings."""
    views = app.sessions.views()
    for view in views:
        session = app.sessions.get(view["session_id"])
        view["config_path"] = session.config_path if session else None
        view["warnings"] = session_warnings(app.policies, session) if session else []
    return views


def report(app: DaemonState, rid: int, started: float) -> p.StatusReport:
    """The answer to a :class:`~daemon.protocol.StatusQuery`."""
    live = [s for s in (app.sessions.get(v["session_id"]) for v in app.sessions.views()) if s and s.connected]
    counts = Counter((s.config_path, s.server) for s in live)
    policies = []
    for (path, server), n in sorted(counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
        _, error = app.policies.get(path, server)
        first = next(s for s in live if (s.config_path, s.server) == (path, server))
        policies.append(
            {
                "path": path,
                "server": server,
                "sessions": n,
                "error": error,
                "warnings": session_warnings(app.policies, first),
            }
        )
    return p.StatusReport(
        rid,
        os.getpid(),
        MCP_ACTION_FIREWALL,
        started,
        app.settings.socket_path,
        app.settings.state_dir,
        len(live),
        len(app.store.open_pending()),
        policies,
    )
