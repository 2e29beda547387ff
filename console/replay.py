"""A backend that serves a fixed daemon state: for snapshot tests, screenshots and trying the UI.

It posts what a real daemon would (:class:`~console.messages.Connected` then one
:class:`~console.messages.PendingChanged`, or one :class:`~console.messages.Disconnected`) and
returns, so a test can wait for the worker to finish and know the screen has its data. Denying
removes the action and posts the new state, like the daemon's event would.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from console.client import ConsoleError
from console.connection import Post
from console.grant_screen import GrantChoice
from console.grants_view import GrantView
from console.messages import Connected, Disconnected, PendingChanged
from console.model import AuditEntry, DaemonState, HistoryQuery
from console.pins import ToolPin


class ReplayBackend:
    """Plays back one recorded state instead of talking to firewalld."""

    def __init__(
        self,
        state: DaemonState | None = None,
        history: tuple[AuditEntry, ...] = (),
        *,
        socket_path: str = "/run/user/1000/mcp-action-firewall/firewalld.sock",
        unreachable: str | None = None,
        full_arguments: dict[str, str] | None = None,
        grants: tuple[GrantView, ...] = (),
        diff: str = "",
        pins: tuple[ToolPin, ...] = (),
    ) -> None:
        """Serve ``state`` and ``history``; or, given ``unreachable``, fail to connect with that reason."""
        self.state = state or DaemonState()
        self.entries = history
        self.unreachable = unreachable
        #: The full arguments of actions whose listing is cut, by action id.
        self.full_arguments = full_arguments or {}
        #: Pinned tools and reviews; accepting or rejecting one changes it here.
        self.tool_pins = pins
        self.reviewed: list[tuple[str, bool]] = []
        self.denied: list[str] = []
        self.approved: list[str] = []
        #: The grants made (action id, choice, base hash), and the live ones shown.
        self.granted: list[tuple[str, GrantChoice, str]] = []
        self.live_grants: list[GrantView] = list(grants)
        self.revoked: list[str] = []
        #: What :meth:`preview_rule` answers.
        self.rule_diff = diff
        self._socket_path = socket_path
        self._post: Post | None = None
        self._lock = threading.Lock()

    @property
    def socket_path(self) -> str:
        """Where the daemon would be."""
        return self._socket_path

    def watch(self, post: Post, stop: threading.Event) -> None:
        """Post the recorded state once and return."""
        self._post = post
        if self.unreachable is not None:
            post(Disconnected(self.unreachable, 5.0, 3))
            return
        post(Connected(self._socket_path))
        post(PendingChanged(self.state, frozenset({"connected"})))

    def refresh(self) -> None:
        """Post the state again."""
        if self._post is not None and self.unreachable is None:
            self._post(PendingChanged(self.state, frozenset({"refresh"})))

    def approve(self, action_id: str) -> str:
        """Drop the action from the state, as the daemon would once its chat runs it."""
        with self._lock:
            action = self.state.action(action_id)
            if action is None or self.unreachable is not None:
                raise ConsoleError(f"no pending action {action_id}")
            self.approved.append(action_id)
            self.state = replace(self.state, actions=tuple(a for a in self.state.actions if a is not action))
        if self._post is not None:
            self._post(PendingChanged(self.state, frozenset({"pending"})))
        return f"approved {action_id} ({action.tool}); it runs now in its chat"

    def grant(self, action_id: str, choice: GrantChoice, base_sha256: str = "") -> str:
        """Record the grant and approve the action (dropped from the state)."""
        if self.state.action(action_id) is None:
            raise ConsoleError(f"no pending action {action_id}")
        self.granted.append((action_id, choice, base_sha256))
        message = self.approve(action_id)
        return message if choice.scope == "once" else f"granted ({choice.scope}); {message}"

    def preview_rule(self, action_id: str, matches: list[dict[str, Any]]) -> tuple[str, str, str]:
        """The recorded diff."""
        if not self.rule_diff:
            raise ConsoleError("this chat uses the bundled policy, which is not yours to edit")
        return "/home/me/firewall_config.json", self.rule_diff, "0" * 64

    def grants(self) -> tuple[GrantView, ...]:
        """The live grants."""
        if self.unreachable is not None:
            raise ConsoleError(self.unreachable)
        return tuple(self.live_grants)

    def revoke(self, grant_id: str) -> str:
        """Drop the grant."""
        with self._lock:
            kept = [g for g in self.live_grants if g.grant_id != grant_id]
            if len(kept) == len(self.live_grants):
                raise ConsoleError(f"no grant {grant_id}")
            self.live_grants = kept
            self.revoked.append(grant_id)
        return f"revoked {grant_id}"

    def deny(self, action_id: str) -> str:
        """Drop the action from the state, as the daemon would."""
        with self._lock:
            action = self.state.action(action_id)
            if action is None or self.unreachable is not None:
                raise ConsoleError(f"no pending action {action_id}")
            self.denied.append(action_id)
            self.state = replace(self.state, actions=tuple(a for a in self.state.actions if a is not action))
        if self._post is not None:
            self._post(PendingChanged(self.state, frozenset({"pending"})))
        return f"denied {action_id} ({action.tool})"

    def arguments(self, action_id: str) -> str:
        """The recorded full arguments (or the listed ones)."""
        action = self.state.action(action_id)
        if action is None or self.unreachable is not None:
            raise ConsoleError(f"no pending action {action_id}")
        return self.full_arguments.get(action_id, action.arguments_json)

    def history(self, query: HistoryQuery, limit: int) -> tuple[AuditEntry, ...]:
        """The recorded rows that match."""
        if self.unreachable is not None:
            raise ConsoleError(self.unreachable)
        return tuple(entry for entry in self.entries if query.matches(entry))[:limit]

    def pins(self) -> tuple[ToolPin, ...]:
        """The recorded pins."""
        if self.unreachable is not None:
            raise ConsoleError(self.unreachable)
        return self.tool_pins

    def review_tool(self, review_id: str, accept: bool) -> str:
        """Accept (pinned) or reject the recorded review, as the daemon would."""
        with self._lock:
            found = [p for p in self.tool_pins if p.review_id == review_id and p.state != "pinned"]
            if not found or (not accept and found[0].state == "rejected"):
                raise ConsoleError(f"no tool definition under review {review_id}")
            pin = found[0]
            after = (
                replace(pin, state="pinned", pinned=None, seen=None)
                if accept
                else replace(pin, state="rejected")
            )
            self.tool_pins = tuple(after if p is pin else p for p in self.tool_pins)
            self.reviewed.append((review_id, accept))
        verb = "accepted: pinned and shown again" if accept else "rejected: stays hidden and denied"
        return f"{review_id} ({pin.tool} on {pin.server}) {verb}"
