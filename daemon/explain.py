"""``firewalld explain`` and ``firewalld check-config``: what the policy, the running daemon's
grants and the tool pins would make of a call."""

from __future__ import annotations

import json
import os
import sys

from pydantic import ValidationError

from daemon.settings import DaemonSettings


def _explain(
    config: str | None, name: str | None, tool: str | None, arguments: str | None, session: str | None = None
) -> int:
    from daemon.config import ConfigError
    from daemon.policy import load_policy

    if config is None:
        from daemon.userconfig import find_policy

        config = find_policy(os.getcwd())
    try:
        policy = load_policy(config, name)
    except ConfigError as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    if tool is None:
        print(f"{config}: OK")
        for warning in policy.warnings:
            print(f"warning: {warning}")
        return 0
    try:
        args = json.loads(arguments or "{}")
    except ValueError as exc:
        print(f"firewalld: the arguments are not valid JSON: {exc}", file=sys.stderr)
        return 2
    print(f"policy: {config or '(bundled defaults)'}" + (f", server section {name!r}" if name else ""))
    for warning in policy.warnings:
        print(f"warning: {warning}")
    lines = policy.explain(tool, args)
    if policy.decide(tool, args).action == "approve":
        granted = _explain_grants(config, name, session, tool, args)
        if granted[-1].startswith("decision:"):
            lines[-1] = lines[-1].replace("decision:", "verdict so far:", 1)
        lines += granted
    for line in lines:
        print(line)
    for line in _pin_lines(tool, name):
        print(line)
    return 0


def _explain_grants(
    config: str | None, name: str | None, session: str | None, tool: str, arguments: object
) -> list[str]:
    """What the running daemon's grants (read from its database) make of a call needing approval."""
    import time

    from daemon.grants import read_grants
    from daemon.settings import DaemonSettings

    path = os.path.abspath(config) if config is not None else None
    grants = [g for g in read_grants(DaemonSettings().db_path) if g.tool == tool]
    now = time.time()
    for grant in grants:
        if grant.scope == "chat" and session is None:
            continue
        if grant.applies(session or "", name, path, now) and grant.covers(arguments):
            return [f"grant {grant.describe()}: matches", f"decision: allow by grant {grant.grant_id}"]
    chat = "" if session else " (give --session ID to include this-chat grants)"
    return [f"grants: none of the daemon's {len(grants)} grant(s) for {tool!r} matches{chat}"]


def _pin_lines(tool: str, name: str | None) -> list[str]:
    """What the pins (read from the state database, read-only) say of ``tool``: a quarantined
    definition denies the call before the policy is asked."""
    from daemon.pins import quarantined_in

    try:
        db_path = DaemonSettings().db_path
    except ValidationError:
        return []
    lines = []
    for server, state, review_id in quarantined_in(db_path, tool, name):
        why = {
            "changed": "its definition changed since it was approved",
            "new": "it is new on that server and not reviewed yet",
            "rejected": "you rejected its current definition",
        }.get(state, state)
        lines.append(
            f"tool pin: on server {server!r} every call of {tool} is DENIED (rule builtin.tool_pin) before "
            f"the policy is asked: {why}. Review it: firewall-console tools (review {review_id})"
        )
    return lines
