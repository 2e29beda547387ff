"""Which big lines from the target may be relayed as they arrive, and what is noted when they end.

Lines from the target pass untouched, except the answers the shim must see whole: a
``tools/list`` page (rewritten, see :mod:`shim.listing`) and an approved call's answer (audited,
see :mod:`shim.confirm`). Of any other line the shim needs at most the id, so a big one (a 10 MB
file) is relayed as it arrives instead of assembled: memory stays bounded by backpressure, and
the agent starts reading at once. The relay asks when it has read
:data:`shim.relay.STREAM_AFTER` bytes of a line, showing its head only. Three shapes are taken;
anything else is assembled as before:

1. ``{"jsonrpc":"2.0","id":X,"result"`` (or ``"error"``; ``jsonrpc`` may also come after the id,
   as sorted keys put it, or not at all): a response whose id comes first;
2. ``{"result"`` (or ``"error"``): a response whose id comes last (JavaScript serialisers put it
   there);
3. ``{"jsonrpc":"2.0","method"`` (an id may come first): the server's own request or
   notification, which answers nothing.

A response (1 or 2) streams only if no tools/list page and no approved call is in flight at all.
For 2 the shim cannot tell which request it answers until it ends; for 1 the id at the head is
not proof either: a line that repeats ``"id"`` is read by most parsers with the *last* one, so a
head that names another request could end by answering the tools/list page. A request sent later
cannot be what the line answers (the server began it before the request arrived), and tools/list
pages and approved calls are rare and short: the cost is that an answer racing one is assembled.

A response's id leaves the in-flight table when its line ends (for shape 2, read from the
line's last bytes). A line that the target's exit cuts short leaves it there: the agent got a
line it cannot parse, and :meth:`shim.firewall.Firewall.on_target_exit` answers the request with
an error.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NamedTuple

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import debug
from shim.jsonrpc import JsonId
from shim.listing import NOT_A_RESPONSE, head_shape, tail_id

log = logging.getLogger("mcp-action-firewall")


class Streamed(NamedTuple):
    """A line being streamed, as :meth:`Streaming.on_target_streamed` needs to know it."""

    answer: bool
    """A response: its id leaves the in-flight table when it ends."""
    msg_id: Any
    """The id from its head, or :data:`shim.listing.NOT_A_RESPONSE` (read it from the tail)."""


class Streaming:
    """The streaming half of :class:`shim.firewall.Firewall`, which provides the state below."""

    _lock: threading.Lock
    _inflight: dict[JsonId, str]
    _list_first_page: dict[JsonId, bool]
    _replays: dict[JsonId, tuple[str, bytes]]

    def _notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        raise NotImplementedError

    def may_stream(self, head: bytes) -> Streamed | None:
        """Whether the target's line that begins with ``head`` may be relayed as it arrives.

        None: it must be assembled (the shim needs it whole, or cannot tell).
        """
        try:
            shape = head_shape(head)
            if shape is None:
                return None
            member, msg_id = shape
            if member == "method":
                return Streamed(False, NOT_A_RESPONSE)
            with self._lock:
                needed = bool(self._list_first_page or self._replays)
            return None if needed else Streamed(True, msg_id)
        except Exception as exc:  # assembling is always safe
            log.error("internal error on the head of a message from the server: %r", exc, exc_info=debug())
            return None

    def on_target_streamed(self, streamed: Streamed, tail: bytes) -> None:
        """A streamed line has ended (with its newline); ``tail`` is its last bytes."""
        if not streamed.answer:
            return
        try:
            msg_id = tail_id(tail) if streamed.msg_id is NOT_A_RESPONSE else streamed.msg_id
            if not rpc.valid_id(msg_id):
                return  # an answer with no id in reach: an exit error may follow it, nothing worse
            with self._lock:
                self._inflight.pop(msg_id, None)
                first_page = self._list_first_page.pop(msg_id, None)
                replay = self._replays.pop(msg_id, None)
        except Exception as exc:  # the reader must outlive any message
            log.error("internal error at the end of a message from the server: %r", exc, exc_info=debug())
            return
        # Only a server that began its answer before the request reached it gets here.
        if first_page is not None:
            log.warning("the server answered tools/list before it was asked; relayed as it was")
        if replay is not None:
            detail = "answer not checked: the server began it before the approved call was sent"
            self._notify(p.Outcome(replay[0], False, detail))
