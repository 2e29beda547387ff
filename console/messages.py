"""Every message the console's workers send to its screen, in one place.

The daemon is only ever spoken to from worker threads (see :mod:`console.connection`); what they
learn reaches the widgets as one of these messages, posted to the app (``post_message`` is
thread-safe). Bursts of changes collapse: a newer :class:`PendingChanged` replaces an older one
still waiting in the queue.
"""

from __future__ import annotations

from textual.message import Message

from console.grants_view import GrantView
from console.model import AuditEntry, DaemonState


class Connected(Message):
    """The console is connected and subscribed to the daemon's events."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.socket_path = socket_path


class Disconnected(Message):
    """No daemon answers; the worker tries again after ``retry_in`` seconds."""

    def __init__(self, reason: str, retry_in: float, attempt: int) -> None:
        super().__init__()
        self.reason = reason
        self.retry_in = retry_in
        self.attempt = attempt


class PendingChanged(Message):
    """A fresh copy of the sessions and pending actions (after connecting, or after an event)."""

    def __init__(self, state: DaemonState, kinds: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.state = state
        #: The kinds of the events that prompted this refresh (``pending``, ``session``, ...).
        self.kinds = kinds

    def can_replace(self, message: Message) -> bool:
        """Only the newest state matters."""
        return isinstance(message, PendingChanged)


class PolicyProblem(Message):
    """The daemon could not load a policy file: calls under it are denied until it is fixed."""

    def __init__(self, detail: str) -> None:
        super().__init__()
        self.detail = detail


class HistoryLoaded(Message):
    """Audit rows for the history view, newest first."""

    def __init__(self, entries: tuple[AuditEntry, ...], query: str) -> None:
        super().__init__()
        self.entries = entries
        #: The filter text the rows answer, so a late answer to an old filter can be dropped.
        self.query = query


class HistoryFailed(Message):
    """The audit log could not be read."""

    def __init__(self, reason: str, query: str) -> None:
        super().__init__()
        self.reason = reason
        self.query = query


class ArgumentsLoaded(Message):
    """The full arguments of an action whose listing cut them (``ok``), or why they could not be fetched."""

    def __init__(self, action_id: str, ok: bool, text: str) -> None:
        super().__init__()
        self.action_id = action_id
        self.ok = ok
        #: The arguments' JSON text, or the reason.
        self.text = text


class DenyFinished(Message):
    """A deny request ended: ``ok`` with the daemon's confirmation, or the reason it failed."""

    def __init__(self, action_id: str, ok: bool, detail: str, verb: str = "deny") -> None:
        super().__init__()
        self.action_id = action_id
        self.ok = ok
        self.detail = detail
        self.verb = verb
        """``deny`` or ``approve``: which request it was."""


class GrantsLoaded(Message):
    """The live grants (``ok``), or why they could not be read (``reason``)."""

    def __init__(self, grants: tuple[GrantView, ...], ok: bool = True, reason: str = "") -> None:
        super().__init__()
        self.grants = grants
        self.ok = ok
        self.reason = reason

    def can_replace(self, message: Message) -> bool:
        """Only the newest list matters."""
        return isinstance(message, GrantsLoaded)
