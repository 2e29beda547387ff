"""A console's grant requests: make one from a paused action, preview an "always" rule, list, revoke.

Only the console's connection handler calls into this (a shim that sends any of these messages
is refused before it gets here, in :meth:`daemon.server.Firewalld._shim_request`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daemon import protocol as p
from daemon.always import apply_rule, preview_rule, rule_for
from daemon.conditions import Args
from daemon.grants import Grant, GrantError, Grants, Match, parse_matches
from daemon.policies import PolicyCache
from daemon.store import PendingRow, Store

#: How a grant scope reads in the console's answer.
_SCOPE_TEXT = {
    "chat": "this tool in this chat",
    "args": "this tool with these arguments",
    "always": "always (a rule in the policy file)",
}


@dataclass(frozen=True, slots=True)
class _Action:
    """A paused action and what a grant made from it binds to."""

    row: PendingRow
    config_path: str | None
    arguments: Any


class GrantDesk:
    """Answers :class:`~daemon.protocol.MakeGrant`, :class:`~daemon.protocol.PreviewRule`,
    :class:`~daemon.protocol.ListGrants` and :class:`~daemon.protocol.RevokeGrant`."""

    def __init__(
        self,
        store: Store,
        grants: Grants,
        policies: PolicyCache,
        approve: Callable[[p.ApproveAction], Awaitable[p.Message]],
        changed: Callable[[str], None],
    ) -> None:
        self._store = store
        self._grants = grants
        self._policies = policies
        self._approve = approve
        self._changed = changed

    def listing(self, msg: p.ListGrants) -> p.GrantList:
        """The live grants (ended ones go first)."""
        if self._grants.expire():
            self._changed("grants expired")
        return p.GrantList(msg.rid, [g.view() for g in self._grants.all()])

    def revoke(self, msg: p.RevokeGrant) -> p.Message:
        grant = self._grants.revoke(msg.grant_id)
        if grant is None:
            return p.Error(msg.rid, p.E_NOT_FOUND, f"no grant {msg.grant_id}")
        self._changed(f"grant {grant.grant_id} revoked")
        return p.Ack(msg.rid, f"revoked {grant.describe()}")

    def preview(self, msg: p.PreviewRule) -> p.Message:
        try:
            action = self._action(msg.action_id)
            matches = parse_matches(msg.matches or ())
            _check_covers(action, matches)
            path, rule = self._rule(action, matches)
            diff, sha = preview_rule(path, action.row.server, rule)
        except GrantError as exc:
            return p.Error(msg.rid, p.E_BAD_REQUEST, str(exc))
        return p.RulePreview(msg.rid, path, diff, sha)

    async def make(self, msg: p.MakeGrant) -> p.Message:
        """Make the grant, then approve the action it was made from."""
        if msg.scope == "once":
            return await self._approve(p.ApproveAction(msg.rid, msg.action_id))
        try:
            action = self._action(msg.action_id)
            matches = parse_matches(msg.matches or ())
            _check_covers(action, matches)
            made = self._make(msg, action, matches)
        except GrantError as exc:
            return p.Error(msg.rid, p.E_BAD_REQUEST, str(exc))
        self._changed(f"grant made: {made}")
        approved = await self._approve(p.ApproveAction(msg.rid, msg.action_id))
        if isinstance(approved, p.Ack):
            return p.Ack(msg.rid, f"{made}; {approved.message}")
        return p.Ack(
            msg.rid,
            f"{made}. {msg.action_id} itself was not held open any more: its chat was told it is paused, "
            "so the agent may call it again (the grant lets it through) or the code approves it",
        )

    def _make(self, msg: p.MakeGrant, action: _Action, matches: tuple[Match, ...]) -> str:
        row = action.row
        if msg.scope == "args" and not matches:
            raise GrantError("a grant for arguments needs at least one argument to match")
        if msg.scope not in _SCOPE_TEXT:
            raise GrantError(f"unknown scope {msg.scope!r} (once, chat, args or always)")
        if msg.scope == "always":
            path, rule = self._rule(action, matches)
            apply_rule(path, row.server, rule, msg.base_sha256)
            self._policies.recheck_all(force=True)
            self._store.audit(
                "grant_made",
                session_id=row.session_id,
                server=row.server,
                tool=row.tool,
                action_id=row.action_id,
                rule="always",
                detail=f"added to {path}: {json.dumps(rule, ensure_ascii=False)}",
            )
            return f"rule added to {path} ({rule['name']})"
        grant: Grant = self._grants.make(
            scope=msg.scope,
            tool=row.tool,
            server=row.server,
            config_path=action.config_path,
            session_id=row.session_id,
            matches=matches,
            minutes=msg.minutes,
            action_id=row.action_id,
        )
        return f"granted {grant.describe()}"

    def _rule(self, action: _Action, matches: tuple[Match, ...]) -> tuple[str, dict[str, Any]]:
        if action.config_path is None:
            raise GrantError(
                "this chat uses the bundled policy, which is not yours to edit: start its shim with "
                "--config FILE to keep rules, or grant for this chat or for a time"
            )
        return action.config_path, rule_for(action.row.tool, matches, action.row.action_id)

    def _action(self, action_id: str) -> _Action:
        """The open action, its chat's policy file, and its arguments, each match checked on them."""
        row = self._store.get_pending(action_id)
        if row is None or row.status != "pending":
            raise GrantError(f"no pending action {action_id}")
        try:
            found = self._store.db.execute(
                "SELECT config_path FROM sessions WHERE session_id = ?", (row.session_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise GrantError(f"cannot read the chat of {action_id}: {exc}") from None
        arguments = json.loads(row.params).get("arguments")
        return _Action(row, found[0] if found else None, arguments)


def _check_covers(action: _Action, matches: tuple[Match, ...]) -> None:
    """Refuse matches that the action's own arguments fail: a grant made from what the human saw
    must at least cover that."""
    arguments = action.arguments
    args = Args(arguments)
    for match in matches:
        if not isinstance(arguments, dict) or not match.passes(arguments, args):
            raise GrantError(f"{action.row.action_id}'s own arguments do not match '{match.describe()}'")
