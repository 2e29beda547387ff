"""A paused call held open while the human may approve it in the console (see :mod:`shim.confirm`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from daemon import protocol as p
from shim.jsonrpc import JsonId


class Cancellable(Protocol):
    def cancel(self) -> None: ...


#: ``schedule(delay, callback)``: run ``callback`` on the loop after ``delay`` seconds.
Schedule = Callable[[float, Callable[[], None]], Cancellable]
#: Seconds between progress notifications for a held call that asked for progress.
PROGRESS_EVERY = 5.0


class Holding:
    """A paused call held open: the agent's request waits while the human may approve it in the
    console; when the hold runs out the agent is told it is paused, as without a hold."""

    __slots__ = ("msg_id", "name", "params_json", "stateless", "verdict", "timer", "ticker", "ticks", "ask")

    def __init__(
        self, msg_id: JsonId, name: str, params_json: bytes, stateless: bool, verdict: p.Verdict
    ) -> None:
        self.msg_id = msg_id
        self.name = name
        self.params_json = params_json
        self.stateless = stateless
        self.verdict = verdict
        self.timer: Cancellable | None = None
        self.ticker: Cancellable | None = None
        self.ticks = 0
        #: The id of the shim's dialog request to the client about it, while one is open.
        self.ask: str | None = None

    def stop(self) -> None:
        for timer in (self.timer, self.ticker):
            if timer is not None:
                timer.cancel()


def _progress_token(params_json: bytes) -> Any:
    """The call's progress token, if it asked for progress notifications."""
    try:
        meta = json.loads(params_json).get("_meta")
    except (ValueError, AttributeError):
        return None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None
