"""The measurements of one variant in one repetition: start, exit, round trips, throughput, memory.

Each function spawns the variant afresh, measures, and leaves nothing running. A variant that
hangs (the seed on any line over 64 KiB) is recorded as ``None`` for what it could not do, and
killed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peer import INITIALIZED, Peer, PeerError, call_line, initialize_line
from bench.plan import Plan
from bench.stats import latency_summary
from bench.variants import FAST_TARGET, FIXTURE_SERVER, PYTHON, Variant

_VALUE = b'"value"'  # the seed re-serialises answers with spaces: match the string alone
_INIT = initialize_line(0) + b"\n"
_INITIALIZED = INITIALIZED + b"\n"


@dataclass(frozen=True)
class Context:
    """Where the variants run: their environment, working directory and log folder."""

    env: dict[str, str]
    cwd: Path
    logs: Path
    plan: Plan

    def spawn(self, variant: Variant, target: list[str]) -> Peer:
        """Start ``variant`` in front of ``target``."""
        env = {**self.env, **variant.env} if variant.env else self.env
        return Peer(variant.wrap(target), env, self.cwd, self.logs / f"{variant.name}.stderr")


def _ms(ns: int) -> float:
    return ns / 1e6


def cold_fast(ctx: Context, variant: Variant) -> dict[str, Any]:
    """Spawn to the ``initialize`` answer, the first call (the shim connects to the daemon), exit."""
    peer = ctx.spawn(variant, FAST_TARGET)
    try:
        peer.send(_INIT)
        peer.recv(30)
        cold = _ms(time.perf_counter_ns() - peer.spawned_ns)
        peer.send(_INITIALIZED)
        start = time.perf_counter_ns()
        peer.send(call_line(1, "get_value", {"key": "k1"}) + b"\n")
        answer = peer.recv(30)
        first = (time.perf_counter_ns() - start) / 1e3
        _check_value(answer, variant)
        rss = peer.peak_rss_kib()
        exit_s = peer.close_stdin()
    finally:
        peer.kill()
    return {
        "cold_fast_ms": cold,
        "first_call_us": first,
        "rss_idle_kib": rss,
        "exit_ms": exit_s * 1e3 if exit_s is not None else None,
    }


def cold_fixture(ctx: Context, variant: Variant) -> dict[str, Any]:
    """Spawn to the ``initialize`` answer with the official SDK's server behind, and its exit."""
    target = [PYTHON, str(FIXTURE_SERVER), "--effects", str(ctx.logs / "effects.jsonl")]
    peer = ctx.spawn(variant, target)
    try:
        peer.send(_INIT)
        peer.recv(60)
        cold = _ms(time.perf_counter_ns() - peer.spawned_ns)
        peer.send(_INITIALIZED)
        exit_s = peer.close_stdin()
    finally:
        peer.kill()
    return {"cold_fixture_ms": cold, "exit_fixture_ms": exit_s * 1e3 if exit_s is not None else None}


def work(ctx: Context, variant: Variant) -> tuple[dict[str, Any], list[float]]:
    """Sequential round trips, 8 in flight, big results and peak memory; returns metrics and samples."""
    plan = ctx.plan
    peer = ctx.spawn(variant, FAST_TARGET)
    out: dict[str, Any] = {}
    try:
        peer.send(_INIT)
        peer.recv(30)
        peer.send(_INITIALIZED)
        samples = _round_trips(peer, variant, plan.warmup, plan.seq_calls)
        out.update({f"rt_{k}_us": v for k, v in latency_summary(samples).items()})
        out["pipelined_cps"] = _pipelined(peer, variant, plan)
        out["rss_calls_kib"] = peer.peak_rss_kib()
        hung = False
        for size, count in plan.blobs:
            key = f"tput_{_size_name(size)}_MBps"
            out[key] = None if hung else _throughput(peer, size, count, plan.blob_timeout_s)
            hung = out[key] is None
        out["rss_peak_kib"] = peer.peak_rss_kib()
        if not hung:
            exit_s = peer.close_stdin()
            out["exit_after_work_ms"] = exit_s * 1e3 if exit_s is not None else None
    finally:
        peer.kill()
    return out, samples


def _round_trips(peer: Peer, variant: Variant, warmup: int, calls: int) -> list[float]:
    lines = [call_line(i, "get_value", {"key": f"k{i}"}) + b"\n" for i in range(1000, 1000 + warmup + calls)]
    samples: list[float] = []
    clock = time.perf_counter_ns
    for n, line in enumerate(lines):
        start = clock()
        peer.send(line)
        answer = peer.recv()
        elapsed = clock() - start
        _check_value(answer, variant)
        if n >= warmup:
            samples.append(elapsed / 1e3)
    return samples


def _pipelined(peer: Peer, variant: Variant, plan: Plan) -> float:
    """Calls per second with ``plan.depth`` calls in flight (refilled as answers arrive)."""
    total = plan.pipelined_calls
    lines = [call_line(i, "get_value", {"key": f"k{i}"}) + b"\n" for i in range(100_000, 100_000 + total)]
    start = time.perf_counter()
    cap = start + plan.pipelined_cap_s
    peer.send(b"".join(lines[: plan.depth]))
    sent, done = plan.depth, 0
    while done < sent:
        block = peer.recv_batch()
        answered = block.count(b"\n") + 1
        if block.count(_VALUE) != answered:
            raise RuntimeError(f"{variant.name}: a pipelined call was not answered with its result")
        done += answered
        more = min(answered, total - sent) if time.perf_counter() < cap else 0
        if more:
            peer.send(b"".join(lines[sent : sent + more]))
            sent += more
    return done / (time.perf_counter() - start)


def _throughput(peer: Peer, size: int, count: int, timeout: float) -> float | None:
    """Median MB/s of ``count`` results of ``size`` bytes; None if the variant hung or died."""
    rates = []
    for i in range(count):
        line = call_line(5000 + i, "get_blob", {"size": size}) + b"\n"
        start = time.perf_counter()
        try:
            peer.send(line)
            answer = peer.recv(timeout)
        except (PeerError, OSError):
            return None
        rates.append(len(answer) / (time.perf_counter() - start) / 1e6)
        if len(answer) < size:
            raise RuntimeError(f"a get_blob({size}) answer was only {len(answer)} bytes")
    rates.sort()
    return rates[len(rates) // 2]


def _size_name(size: int) -> str:
    return f"{size // 1_000_000}MB" if size >= 1_000_000 else f"{size // 1000}KB"


def _check_value(answer: bytes, variant: Variant) -> None:
    if _VALUE not in answer:
        raise RuntimeError(f"{variant.name}: get_value was not answered with its result: {answer[:300]!r}")
