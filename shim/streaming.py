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

A response (1 or 2) streams only if no tools/list page and no approved call is in flight. Its id
cannot be known for sure before its end (a repeated or escaped ``"id"`` key anywhere in it is what
the agent's parser reads), so the relay holds back its last byte that is not blank (the ``}`` that
closes it) until it ends; if a tools/list page or an approved call was sent while it streamed, that
byte is left out and the agent cannot read the line as an answer to anything (see
:meth:`Streaming.may_end_stream`). An honest server cannot answer a request that it had not yet
received when it began the line: its answer only raced, and its request gets an error instead.

While a line streams, the shim's own lines to the agent wait for its end (nothing may land inside
it); past :data:`shim.loop.HIGH_WATER` of them the relay stops reading the agent until it ends.

"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import Writer, debug
from shim.jsonrpc import JsonId
from shim.listing import NOT_A_RESPONSE, head_shape, tail_id

log = logging.getLogger("mcp-action-firewall")


class Streamed(NamedTuple):
    """A line being streamed, as :meth:`Streaming.on_target_streamed` needs to know it."""

    answer: bool
    """A response: its id leaves the in-flight table when it ends."""
    msg_id: Any
    """The id from its head, or :data:`shim.listing.NOT_A_RESPONSE` (read it from the tail)."""
    asked: int = 0
    """:attr:`Streaming.whole_answers_asked` when it began."""

    def answered(self, tail: bytes) -> Any:
        """The id it answers: from its head, else from its last bytes ``tail``."""
        return tail_id(tail) if self.msg_id is NOT_A_RESPONSE else self.msg_id


class Streaming:
    """The streaming half of :class:`shim.firewall.Firewall`, which provides the state below."""

    whole_answers_asked: int
    _inflight: dict[JsonId, str]
    _list_first_page: dict[JsonId, bool]
    _replays: dict[JsonId, Any]

    _client: Writer

    def _notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        raise NotImplementedError

    def _replay_lost(self, wire_id: JsonId, why: str) -> None:
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
            needed = bool(self._list_first_page or self._replays)
            return None if needed else Streamed(True, msg_id, self.whole_answers_asked)
        except Exception as exc:  # assembling is always safe
            log.error("internal error on the head of a message from the server: %r", exc, exc_info=debug())
            return None

    def may_end_stream(self, streamed: Streamed) -> bool:
        """Whether a streamed line may be ended as it came; if not, the relay leaves out its last
        byte (which closes it), and the agent cannot read it as an answer to anything.

        A response may not end as it came if a tools/list page or an approved call was sent to
        the server while it streamed (or waits now): the line's id cannot be known before the
        agent reads it (a repeated or escaped ``"id"`` key anywhere in it decides), and a server
        that guessed the new request's id could end the line as its answer, unrewritten and
        unaudited. An honest server cannot answer a request it had not received when it began
        the line; its answer only races, and gets an error instead (see
        :meth:`on_target_poisoned`).
        """
        if not streamed.answer:
            return True
        waiting = bool(self._list_first_page or self._replays)
        return not waiting and self.whole_answers_asked == streamed.asked

    def on_target_poisoned(self, streamed: Streamed, tail: bytes) -> None:
        """A streamed answer was left unreadable (see :meth:`may_end_stream`): the request its
        head or tail names, if any, gets an error, unless it is the page or call it raced."""
        try:
            msg_id = streamed.answered(tail)
            if not rpc.valid_id(msg_id):
                return
            if msg_id in self._list_first_page or msg_id in self._replays:
                return  # its real answer is still to come
            if self._inflight.pop(msg_id, None) is None:
                return
        except Exception as exc:  # the reader must outlive any message
            log.error("internal error at the end of a message from the server: %r", exc, exc_info=debug())
            return
        log.warning("dropped the server's answer to %r: it raced a tools/list or an approved call", msg_id)
        text = (
            "The MCP Action Firewall dropped the server's answer: it was still arriving when a tool "
            "listing or an approved call was sent, and could have been taken for their answer (or it "
            "ended in a megabyte of blanks). Retry."
        )
        self._client.write_line(rpc.error_line(msg_id, rpc.INTERNAL_ERROR, text))

    def on_target_streamed(self, streamed: Streamed, tail: bytes) -> None:
        """A streamed line has ended (with its newline); ``tail`` is its last bytes."""
        if not streamed.answer:
            return
        try:
            msg_id = streamed.answered(tail)
            if not rpc.valid_id(msg_id):
                return  # an answer with no id in reach: an exit error may follow it, nothing worse
            if msg_id in self._replays:
                # Only a server that began its answer before the approved call reached it gets
                # here: its answer went by under the shim's own id, which the agent does not know.
                self._replay_lost(msg_id, "its answer could not be checked")
                return
            self._inflight.pop(msg_id, None)
            first_page = self._list_first_page.pop(msg_id, None)
        except Exception as exc:  # the reader must outlive any message
            log.error("internal error at the end of a message from the server: %r", exc, exc_info=debug())
            return
        if first_page is not None:
            log.warning("the server answered tools/list before it was asked; relayed as it was")
