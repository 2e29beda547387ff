"""The console's link to firewalld: runs in worker threads, reports through messages.

A :class:`Backend` is everything the app needs from a daemon. :class:`DaemonBackend` is the real
one: :meth:`DaemonBackend.watch` holds one subscribed connection, turns every pushed event into
a fresh :class:`~console.messages.PendingChanged`, and when no daemon answers it says so
(:class:`~console.messages.Disconnected`) and tries again with a growing delay, until told to
stop. Requests (deny, audit log) each use a short connection of their own, so a slow request
never holds up the live view. Nothing here raises into the UI: failures become messages.
:mod:`console.replay` has a backend that serves a fixed state, for screenshots and tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from textual.message import Message

from console.client import ConsoleClient, ConsoleError
from console.grant_screen import GrantChoice
from console.grants_view import GrantView, grant_from_wire
from console.messages import Connected, Disconnected, PendingChanged, PolicyProblem
from console.model import AuditEntry, HistoryQuery, audit_from_wire, state_from_wire
from console.pins import ToolPin, pin_from_wire
from daemon.protocol import default_socket_path

#: Posts a message to the app; thread-safe (``App.post_message``).
Post = Callable[[Message], object]

#: How long one wait for a pushed event lasts before the worker looks at its stop flag again.
_EVENT_POLL = 0.25
#: Events arriving this close together are answered with one refresh.
_COALESCE = 0.02


def backoff(attempt: int, *, first: float = 0.25, cap: float = 5.0) -> float:
    """Seconds to wait before connection attempt number ``attempt + 1`` (doubling, capped)."""
    return min(cap, first * 2.0 ** max(0, attempt - 1))


class Backend(Protocol):
    """What the console needs from a daemon. Every method blocks: call it from a worker thread."""

    @property
    def socket_path(self) -> str:
        """Where the daemon is expected."""
        ...

    def watch(self, post: Post, stop: threading.Event) -> None:
        """Post the daemon's state and every change until ``stop`` is set."""
        ...

    def refresh(self) -> None:
        """Ask :meth:`watch` to re-read the state, or to retry a connection, now."""
        ...

    def approve(self, action_id: str) -> str:
        """Approve one held action (its chat gets the real result); returns the daemon's message.

        Raises:
            ConsoleError: the daemon refused (the call is not held any more), or could not be reached.
        """
        ...

    def grant(self, action_id: str, choice: GrantChoice, base_sha256: str = "") -> str:
        """Approve an action with a scope (see :mod:`console.grant_screen`); returns the daemon's message.

        Raises:
            ConsoleError: the daemon refused, or could not be reached.
        """
        ...

    def preview_rule(self, action_id: str, matches: list[dict[str, Any]]) -> tuple[str, str, str]:
        """The policy file an "always" grant would change, the diff, and the file's SHA-256.

        Raises:
            ConsoleError: the daemon refused (no policy file of the user's), or could not be reached.
        """
        ...

    def grants(self) -> tuple[GrantView, ...]:
        """The live grants, newest first.

        Raises:
            ConsoleError: the daemon could not be reached.
        """
        ...

    def revoke(self, grant_id: str) -> str:
        """End a grant; returns the daemon's confirmation.

        Raises:
            ConsoleError: no such grant, or the daemon could not be reached.
        """
        ...

    def deny(self, action_id: str) -> str:
        """Deny one pending action; returns the daemon's confirmation.

        Raises:
            ConsoleError: the daemon refused, or could not be reached.
        """
        ...

    def history(self, query: HistoryQuery, limit: int) -> tuple[AuditEntry, ...]:
        """Audit rows matching ``query``, newest first.

        Raises:
            ConsoleError: the daemon could not be reached.
        """
        ...

    def pins(self) -> tuple[ToolPin, ...]:
        """Every server's pinned tools and the definitions waiting for review.

        Raises:
            ConsoleError: the daemon could not be reached.
        """
        ...

    def review_tool(self, review_id: str, accept: bool) -> str:
        """Accept (re-pin) or reject a definition under review; returns the daemon's message.

        Raises:
            ConsoleError: no such review (the definition changed since), or no daemon.
        """
        ...

    def arguments(self, action_id: str) -> str:
        """The full arguments (JSON text) of a pending action whose listing cut them.

        Raises:
            ConsoleError: no such pending action, or the daemon could not be reached.
        """
        ...


class DaemonBackend:
    """The real daemon, over its Unix socket."""

    def __init__(self, socket_path: str | None = None, *, timeout: float = 5.0) -> None:
        self._socket_path = socket_path or default_socket_path()
        self._timeout = timeout
        self._wake = threading.Event()

    @property
    def socket_path(self) -> str:
        """Where the daemon is expected."""
        return self._socket_path

    def refresh(self) -> None:
        """Re-read now (when connected) or retry now (when not)."""
        self._wake.set()

    def watch(self, post: Post, stop: threading.Event) -> None:
        """Stay connected and subscribed; reconnect with backoff after any failure."""
        attempt = 0
        while not stop.is_set():
            client = ConsoleClient(self._socket_path, timeout=self._timeout)
            try:
                client.connect()
                client.subscribe()
            except (ConsoleError, OSError) as exc:
                client.close()
                attempt += 1
                delay = backoff(attempt)
                post(Disconnected(_reason(exc), delay, attempt))
                self._pause(delay, stop)
                continue
            attempt = 0
            post(Connected(self._socket_path))
            try:
                self._follow(client, post, stop)
            except (ConsoleError, OSError):
                pass  # the daemon went away: try again at once, then back off
            finally:
                client.close()

    def _follow(self, client: ConsoleClient, post: Post, stop: threading.Event) -> None:
        post(PendingChanged(state_from_wire(*_pending(client)), frozenset({"connected"})))
        while not stop.is_set():
            event = client.next_event(_EVENT_POLL)
            if event is None and not self._wake.is_set():
                continue
            self._wake.clear()
            events = [event] if event is not None else []
            # A burst (a flood of pauses, a bulk deny) becomes one refresh, not one per event.
            while len(events) < 256 and (more := client.next_event(_COALESCE)) is not None:
                events.append(more)
            for problem in dict.fromkeys(e.detail for e in events if e.kind == "policy" and e.detail):
                post(PolicyProblem(problem))
            kinds = frozenset(e.kind for e in events) or frozenset({"refresh"})
            post(PendingChanged(state_from_wire(*_pending(client)), kinds))

    def _pause(self, delay: float, stop: threading.Event) -> None:
        """Sleep ``delay`` seconds, waking early for stop or :meth:`refresh`."""
        self._wake.clear()
        deadline = time.monotonic() + delay
        while not stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            stop.wait(min(0.05, left))
        self._wake.clear()

    def approve(self, action_id: str) -> str:
        """Approve one held action; returns the daemon's message."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return client.approve(action_id)

    def grant(self, action_id: str, choice: GrantChoice, base_sha256: str = "") -> str:
        """Approve an action with a scope; returns the daemon's message."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            scope, minutes, matches = choice.scope, choice.minutes, choice.matches
            return client.grant(action_id, scope, minutes=minutes, matches=matches, base_sha256=base_sha256)

    def preview_rule(self, action_id: str, matches: list[dict[str, Any]]) -> tuple[str, str, str]:
        """The change an "always" grant would make: file, diff, the file's SHA-256."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            preview = client.preview_rule(action_id, matches)
        return preview.path, preview.diff, preview.base_sha256

    def grants(self) -> tuple[GrantView, ...]:
        """The live grants, newest first."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return tuple(grant_from_wire(g) for g in client.grants())

    def revoke(self, grant_id: str) -> str:
        """End a grant now."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return client.revoke(grant_id)

    def deny(self, action_id: str) -> str:
        """Deny one pending action; returns the daemon's confirmation."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return client.deny(action_id)

    def arguments(self, action_id: str) -> str:
        """The full arguments of a pending action, size and hash checked."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return client.arguments(action_id).text

    def pins(self) -> tuple[ToolPin, ...]:
        """Every server's pins, reviews first."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return tuple(pin_from_wire(raw) for raw in client.pins())

    def review_tool(self, review_id: str, accept: bool) -> str:
        """Accept or reject a definition under review."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            return client.review_tool(review_id, accept)

    def history(self, query: HistoryQuery, limit: int) -> tuple[AuditEntry, ...]:
        """Audit rows matching ``query``, newest first."""
        with ConsoleClient(self._socket_path, timeout=self._timeout) as client:
            rows = client.log(limit, query.session_id, query.server, query.tool)
        entries = (audit_from_wire(row) for row in rows)
        return tuple(entry for entry in entries if query.matches(entry))


def _pending(client: ConsoleClient) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    snapshot = client.pending()
    return snapshot.sessions, snapshot.actions


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConsoleError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "firewalld did not answer in time"
    return f"could not talk to firewalld: {exc}"
