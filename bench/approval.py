"""The cost of a paused call and of a confirm, through the shim and the daemon.

One cycle: the agent calls ``delete_item`` (the default policy pauses it: the shim answers
``PAUSED_FOR_APPROVAL`` at once); a console connection reads the code (``ListPending``, as
``firewall-console`` does); the agent calls ``firewall_confirm`` with it and gets the target's
real result. Each step is timed; the daemon's per-minute prompt limit is raised for the run (a
daemon setting, ``FIREWALLD_MAX_PROMPTS_PER_MINUTE``), or cycle 13 would be refused as a flood.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from typing import Any

from bench.measure import Context
from bench.peer import INITIALIZED, Peer, call_line, initialize_line
from bench.stats import latency_summary
from bench.variants import FAST_TARGET, Variant
from daemon import protocol as p


class Console:
    """A console connection, just enough to read codes."""

    def __init__(self, socket_path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(socket_path)
        self.decoder = p.FrameDecoder()
        self.rid = 0
        self.sock.sendall(p.encode(p.Hello(role=p.ROLE_CONSOLE)))
        if not isinstance(self._receive(), p.Welcome):
            raise RuntimeError("firewalld refused the console")

    def _receive(self) -> p.Message:
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError("firewalld closed the console connection")
            messages = self.decoder.feed(data)
            if messages:
                return messages[0]

    def code_of(self, action_id: str) -> str:
        """The code of a pending action (``ListPending``)."""
        self.rid += 1
        self.sock.sendall(p.encode(p.ListPending(self.rid)))
        reply = self._receive()
        if not isinstance(reply, p.PendingList):
            raise RuntimeError(f"expected a pending list, got {reply}")
        return str(next(a["code"] for a in reply.actions if a["action_id"] == action_id))

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def approvals(ctx: Context, variant: Variant, socket_path: str, cycles: int) -> dict[str, Any]:
    """Time ``cycles`` pause / read code / confirm cycles; latencies in microseconds."""
    peer: Peer = ctx.spawn(variant, FAST_TARGET)
    console = Console(socket_path)
    paused, listed, confirmed = [], [], []
    clock = time.perf_counter_ns
    try:
        peer.send(initialize_line(0) + b"\n")
        peer.recv(30)
        peer.send(INITIALIZED + b"\n")
        peer.send(call_line(1, "get_value", {"key": "warm"}) + b"\n")  # connect to the daemon first
        peer.recv(30)
        for i in range(cycles):
            start = clock()
            peer.send(call_line(10 + 2 * i, "delete_item", {"id": i}) + b"\n")
            answer = peer.recv()
            paused.append((clock() - start) / 1e3)
            action_id = _paused_action(answer)
            start = clock()
            code = console.code_of(action_id)
            listed.append((clock() - start) / 1e3)
            start = clock()
            peer.send(call_line(11 + 2 * i, "firewall_confirm", {"otp": code}) + b"\n")
            answer = peer.recv()
            confirmed.append((clock() - start) / 1e3)
            if b'"text":"deleted"' not in answer:
                raise RuntimeError(f"the confirmed call did not run: {answer[:300]!r}")
        peer.close_stdin()
    finally:
        console.close()
        peer.kill()
    tenth = max(1, cycles // 10)
    out: dict[str, Any] = {f"pause_{k}_us": v for k, v in latency_summary(paused).items()}
    out.update({f"confirm_{k}_us": v for k, v in latency_summary(confirmed).items()})
    out["list_pending_p50_us"] = statistics.median(listed)
    # A session's confirm checks every action it closed in the last hour: watch it grow.
    out["confirm_first10pct_us"] = statistics.median(confirmed[:tenth])
    out["confirm_last10pct_us"] = statistics.median(confirmed[-tenth:])
    return out


def _paused_action(answer: bytes) -> str:
    result = json.loads(answer)["result"]
    payload = json.loads(result["content"][0]["text"])
    if payload.get("status") != "PAUSED_FOR_APPROVAL":
        raise RuntimeError(f"delete_item was not paused: {answer[:300]!r}")
    return str(payload["action_id"])
