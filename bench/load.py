"""The daemon alone under many sessions: 200 connections speaking the wire protocol as shims.

Each connection says :class:`~daemon.protocol.Hello` as a shim and then sends
:class:`~daemon.protocol.Decide` frames for an allowed call (so each one is judged and audited).
Two loads, one generator thread, ``selectors`` over every socket:

- *saturation*: every session keeps one decision in flight; the most the daemon manages.
- *paced*: decisions are due at a fixed total rate (5,000/s), round robin over the sessions,
  sent whether or not earlier ones were answered (open loop). Latency is counted from when each
  was due, so a daemon (or a generator) that falls behind shows it instead of hiding it.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any

from daemon import protocol as p

PARAMS = b'{"name":"get_value","arguments":{"key":"k1"}}'


class Sessions:
    """``n`` shim connections to one daemon."""

    def __init__(self, socket_path: str, n: int) -> None:
        self.socks: list[socket.socket] = []
        self.decoders: list[p.FrameDecoder] = []
        hello = p.encode(p.Hello(role=p.ROLE_SHIM, target=["bench-load"], cwd="/", pid=os.getpid()))
        for _ in range(n):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(socket_path)
            sock.sendall(hello)
            self.socks.append(sock)
            self.decoders.append(p.FrameDecoder())
        for i in range(n):
            welcome = self._read(i)
            if not isinstance(welcome[0], p.Welcome):
                raise RuntimeError(f"firewalld refused a session: {welcome[0]}")
        self.sel = selectors.DefaultSelector()
        for i, sock in enumerate(self.socks):
            self.sel.register(sock, selectors.EVENT_READ, i)

    def _read(self, i: int) -> list[p.Message]:
        while True:
            data = self.socks[i].recv(65536)
            if not data:
                raise RuntimeError("firewalld closed a session")
            messages = self.decoders[i].feed(data)
            if messages:
                return messages

    def close(self) -> None:
        """Close every connection."""
        self.sel.close()
        for sock in self.socks:
            sock.close()

    def _answers(self, timeout: float) -> list[tuple[int, p.Message]]:
        out = []
        events = self.sel.select(timeout)
        if not events and timeout >= 5.0:
            raise RuntimeError(f"firewalld answered nothing for {timeout:g} s")
        for key, _ in events:
            i = key.data
            data = self.socks[i].recv(1 << 16)
            if not data:
                raise RuntimeError("firewalld closed a session")
            out += [(i, m) for m in self.decoders[i].feed(data)]
        return out

    def saturate(self, seconds: float) -> dict[str, Any]:
        """Every session keeps one decision in flight for ``seconds``."""
        due: dict[int, int] = {}
        latencies: list[float] = []
        clock = time.perf_counter_ns
        start = clock()
        end = start + int(seconds * 1e9)
        rid = 0
        for sock in self.socks:
            rid += 1
            due[rid] = clock()
            sock.sendall(p.encode(p.Decide(rid, PARAMS)))
        while due:
            for i, msg in self._answers(5.0):
                now = clock()
                latencies.append((now - due.pop(_allowed(msg))) / 1e3)
                if now < end:
                    rid += 1
                    due[rid] = clock()
                    self.socks[i].sendall(p.encode(p.Decide(rid, PARAMS)))
        return {"rate": len(latencies) / ((clock() - start) / 1e9), "latencies_us": latencies}

    def paced(self, rate: int, seconds: float) -> dict[str, Any]:
        """Decisions due at ``rate`` per second in total, for ``seconds``, sent open loop."""
        total = int(rate * seconds)
        interval = 1e9 / rate
        due: dict[int, float] = {}
        latencies: list[float] = []
        clock = time.perf_counter_ns
        start = clock()
        n = len(self.socks)
        sent = 0
        while sent < total or due:
            now = clock()
            while sent < total and start + sent * interval <= now:
                due[sent] = start + sent * interval
                self.socks[sent % n].sendall(p.encode(p.Decide(sent, PARAMS)))
                sent += 1
            wait = (start + sent * interval - clock()) / 1e9 if sent < total else 5.0
            for _, msg in self._answers(max(wait, 0.0)):
                latencies.append((clock() - due.pop(_allowed(msg))) / 1e3)
        elapsed = (clock() - start) / 1e9
        return {"rate": total / elapsed, "latencies_us": latencies}


def _allowed(msg: p.Message) -> int:
    if not isinstance(msg, p.Verdict) or msg.action != p.ALLOW:
        raise RuntimeError(f"expected an allow verdict, got {msg}")
    return msg.rid
