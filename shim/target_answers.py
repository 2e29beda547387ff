"""What the shim does with the target's lines: answers matched to their requests, over-long lines,
and the target's exit (see :mod:`shim.firewall`)."""

from __future__ import annotations

import logging
from typing import Any

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import debug
from shim.elicit import Elicitations
from shim.jsonrpc import JsonId
from shim.listing import NOT_A_RESPONSE, response_id, tail_id
from shim.pinning import Pinning
from shim.streaming import Streaming

log = logging.getLogger("mcp-action-firewall")


class TargetAnswers(Elicitations, Streaming, Pinning):
    """The target-to-agent half of :class:`shim.firewall.Firewall`, which provides the state."""

    def on_target_line(self, line: bytes) -> None:
        """Handle one line from the target."""
        if not line.strip():
            return
        out: bytes | None = line
        if self._inflight or self._replays:  # nothing asked: nothing to look up
            try:
                out = self._target_response(line)
            except Exception as exc:  # relay it untouched rather than lose it
                log.error("internal error on a message from the server: %r", exc, exc_info=debug())
        if out is not None:
            self._relay_in_order(out)

    def _target_response(self, line: bytes) -> bytes | None:
        """The line to relay for a response (None: a tools/list page written once firewalld has
        checked it; see :mod:`shim.pinning`)."""
        msg_id = response_id(line, exact=bool(self._list_first_page or self._replays))
        if msg_id is NOT_A_RESPONSE:
            return line
        replay = self._forget_replay(msg_id)
        if replay is not None:
            return self._finish_replay(replay, line)
        method = self._inflight.pop(msg_id, None)
        first_page = self._list_first_page.pop(msg_id, None)
        if method == "tools/list" and first_page is not None:
            return self._tools_page(msg_id, line, first_page)
        return line

    def on_late_reply(self, reply: p.Message) -> None:
        """An answer that came after its request gave up (or to a listing sent again)."""
        if not self._pins_message(reply):
            super().on_late_reply(reply)

    def on_target_overlong(self, head: bytes, tail: bytes, size: int) -> None:
        """A line from the target over the size limit was dropped; ``head`` and ``tail`` are its ends.

        If it was the answer to a request in flight, that request gets an error instead of no answer.
        """
        try:
            kind, salvaged = rpc.salvage(head)
            found: Any = salvaged if kind == "response" else tail_id(tail)
            if not rpc.valid_id(found):
                return
            msg_id: JsonId = found
            replay = self._forget_replay(msg_id)
            if replay is not None:
                self._record(replay.action_id, "ran", f"answer of {size} bytes dropped: over the limit")
                msg_id = replay.agent_id
            elif self._inflight.pop(msg_id, None) is None:
                return
            self._list_first_page.pop(msg_id, None)
            why = f"The server's answer ({size} bytes or more) is over the firewall's size limit: dropped."
            self._client.write_line(rpc.error_line(msg_id, rpc.INTERNAL_ERROR, why))
        except Exception as exc:  # the reader must outlive any message
            log.error("internal error on an over-long message from the server: %r", exc, exc_info=debug())

    def on_target_exit(self) -> None:
        """The target closed its stdout: every request still in flight gets an error."""
        self.target_alive = False
        for wire_id in list(self._replays):
            self._replay_lost(wire_id, "the server exited before it answered")
        ids = list(self._inflight)
        self._inflight.clear()
        self._list_first_page.clear()
        self._continuations.clear()
        for msg_id in ids:
            self._answer_gone(msg_id)

    def _answer_gone(self, msg_id: JsonId) -> None:
        self._inflight.pop(msg_id, None)
        self._client.write_line(
            rpc.error_line(msg_id, rpc.TARGET_GONE, "The MCP server behind the firewall has exited.")
        )
