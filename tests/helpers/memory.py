"""In-memory stand-ins for the shim's pipes and daemon link, for driving a Firewall in a test."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from daemon import protocol as p

Callback = Callable[[p.Message | None, str], None]


class Lines:
    """A pipe end that keeps what was written."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write_line(self, line: bytes) -> bool:
        self.lines.append(line)
        return True

    def json(self) -> list[Any]:
        return [json.loads(line) for line in self.lines]


class FakeLink:
    """Records the firewall's requests and notes to the daemon; the test answers the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[p.Message, Callback]] = []
        self.notes: list[p.Message] = []

    def request(self, make: Callable[[int], p.Message], callback: Callback) -> None:
        self.requests.append((make(len(self.requests) + 1), callback))

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None:
        self.notes.append(message)

    def notify_reliable(self, key: str, message: p.Outcome) -> None:
        self.notes.append(message)

    def outcomes(self) -> list[tuple[str, str]]:
        """``(action id, state)`` of every outcome recorded, in order."""
        return [(n.action_id, n.state) for n in self.notes if isinstance(n, p.Outcome)]

    def answer(self, index: int, reply: p.Message | None, why: str = "") -> None:
        self.requests[index][1](reply, why)
