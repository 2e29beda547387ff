"""Where a call's wall-clock time goes between processes: ``python -m bench.sched``.

py-spy shows where each process spends its CPU; it cannot show the time a call spends with no
process running it: waiting to be woken, or queued behind another process. This tool records
the kernel's scheduler events (``sched_waking``, ``sched_switch``) while the benchmark's client
makes sequential calls through a variant (the shim and a daemon, or the target alone), with a
marker written around each call, then prints the median call as a timeline: who woke whom, on
which CPU, and how long each process ran. Summed over every call: the on-CPU time per process,
and the wake-up latency (from ``sched_waking`` to the woken process running), per hop.

Needs root and tracefs (mounted at /sys/kernel/tracing if it is not). Linux only.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.peer import INITIALIZED, Peer, call_line, initialize_line
from bench.variants import FAST_TARGET, PYTHON, Daemon, minimal_env

TRACEFS = Path("/sys/kernel/tracing")
_EVENTS = ("sched/sched_switch", "sched/sched_waking")
_LINE = re.compile(r"-(\d+)\s+\[(\d+)\].*?(\d+\.\d+): (\S+): (.*)")


@dataclass
class Call:
    """One call's scheduler events, as offsets in µs from the client's marker."""

    start: float
    end: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)  # process -> µs on a CPU
    wakes: list[tuple[str, float]] = field(default_factory=list)  # woken, µs until it ran


def _write(path: str, value: str) -> None:
    (TRACEFS / path).write_text(value)


def _ensure_tracefs() -> None:
    if not (TRACEFS / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)


def record(
    argv: list[str], env: dict[str, str], cwd: Path, calls: int, warmup: int
) -> tuple[str, int, list[int]]:
    """Trace ``calls`` sequential calls after ``warmup``.

    Returns the raw trace, the variant's pid and its children's pids.
    """
    peer = Peer(argv, env, cwd, cwd / "variant.stderr")
    try:
        peer.send(initialize_line() + b"\n")
        peer.recv(30)
        peer.send(INITIALIZED + b"\n")
        lines = [call_line(i, "get_value", {"key": f"k{i}"}) + b"\n" for i in range(warmup + calls)]
        for line in lines[:warmup]:
            peer.send(line)
            peer.recv()
        children = Path(f"/proc/{peer.pid}/task/{peer.pid}/children").read_text().split()
        _write("trace", "")
        _write("buffer_size_kb", "32768")
        for event in _EVENTS:
            _write(f"events/{event}/enable", "1")
        try:
            with open(TRACEFS / "trace_marker", "w") as marker:
                _write("tracing_on", "1")
                for line in lines[warmup:]:
                    marker.write("CALL\n")
                    marker.flush()
                    peer.send(line)
                    peer.recv()
                    marker.write("DONE\n")
                    marker.flush()
        finally:
            _write("tracing_on", "0")
            for event in _EVENTS:
                _write(f"events/{event}/enable", "0")
        trace = (TRACEFS / "trace").read_text()
        _write("trace", "")
        _write("buffer_size_kb", "1408")
        return trace, peer.pid, [int(c) for c in children]
    finally:
        peer.kill()


def parse(trace: str, names: dict[int, str]) -> list[Call]:
    """Split the trace into calls; name processes by pid (anything else is "other")."""

    def name(pid: int) -> str:
        return "idle" if pid == 0 else names.get(pid, "other")

    calls: list[Call] = []
    call: Call | None = None
    on_cpu: dict[int, tuple[str, float]] = {}  # cpu -> (process, since)
    waking: dict[str, float] = {}  # process -> when it was woken
    for raw in trace.splitlines():
        m = _LINE.search(raw)
        if not m:
            continue
        pid, cpu, ts, event, rest = int(m[1]), int(m[2]), float(m[3]) * 1e6, m[4], m[5]
        if event == "tracing_mark_write":
            if "CALL" in rest:
                call = Call(ts)
                on_cpu = {c: (p, ts) for c, (p, _) in on_cpu.items()}
            elif call is not None:
                call.end = ts - call.start
                for proc, since in on_cpu.values():
                    call.running[proc] = call.running.get(proc, 0.0) + ts - since
                calls.append(call)
                call = None
            continue
        if event == "sched_waking":
            woken = name(int(re.search(r"pid=(\d+)", rest)[1]))  # type: ignore[index]
            target = int(re.search(r"target_cpu=(\d+)", rest)[1])  # type: ignore[index]
            waking[woken] = ts
            if call is not None:
                call.events.append((ts - call.start, f"{name(pid)} wakes {woken} (to cpu{target})"))
        elif event == "sched_switch":
            prev = name(int(re.search(r"prev_pid=(\d+)", rest)[1]))  # type: ignore[index]
            nxt = name(int(re.search(r"next_pid=(\d+)", rest)[1]))  # type: ignore[index]
            if call is not None:
                was, since = on_cpu.get(cpu, (prev, call.start))
                call.running[was] = call.running.get(was, 0.0) + ts - max(since, call.start)
                shown = f"{nxt} ({_comm(rest, 'next_comm')})" if nxt == "other" else nxt
                call.events.append((ts - call.start, f"cpu{cpu}: {prev} -> {shown}"))
                if nxt in waking:
                    call.wakes.append((nxt, ts - waking.pop(nxt)))
            on_cpu[cpu] = (nxt, ts)
    return calls


def _comm(rest: str, key: str) -> str:
    found = re.search(key + r"=(\S+)", rest)
    return found[1] if found else "?"


def report(calls: list[Call], quantile: float = 0.5) -> str:
    """The timeline of the call at ``quantile`` (the median by default), then per-process CPU and
    per-hop wake-up latency over all calls."""
    if not calls:
        return "no complete call was traced"
    calls.sort(key=lambda c: c.end)
    median = calls[min(len(calls) - 1, int(len(calls) * quantile))]
    out = [f"{len(calls)} calls traced; call at q={quantile:g}: {median.end:.0f} µs (tracing adds some)", ""]
    out.append(f"the call at q={quantile:g}, µs from the client's write:")
    out += [f"  {offset:7.1f}  {text}" for offset, text in median.events]
    out.append(f"  {median.end:7.1f}  client has the answer")
    cpu: dict[str, list[float]] = defaultdict(list)
    wake: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        for proc, us in c.running.items():
            if proc != "idle":
                cpu[proc].append(us)
        for woken, latency in c.wakes:
            wake[woken].append(latency)
    out += ["", "per call, median over all calls:"]
    out.append(f"  {'process':10} {'on a CPU [µs]':>14} {'woken, wait [µs]':>17}")
    for proc in sorted(cpu, key=lambda p: -statistics.median(cpu[p])):
        waits = wake.get(proc, [])
        wait = f"{statistics.median(waits):.1f} ×{len(waits) / len(calls):.1f}" if waits else "—"
        out.append(f"  {proc:10} {statistics.median(cpu[proc]):14.1f} {wait:>17}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sched", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("shim", "direct"), default="shim")
    parser.add_argument("--calls", type=int, default=300, help="calls traced (default 300)")
    parser.add_argument("--warmup", type=int, default=3000, help="calls before tracing (default 3000)")
    parser.add_argument(
        "--quantile", type=float, default=0.5, help="whose timeline is shown (default 0.5; 0.99: a tail call)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        print("bench.sched needs root on Linux (it reads the kernel's scheduler trace)", file=sys.stderr)
        return 2
    _ensure_tracefs()
    with tempfile.TemporaryDirectory(prefix="fw-sched-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        env = minimal_env(tmp / "home", FIREWALLD_MAX_PROMPTS_PER_MINUTE="1000000")
        daemon = Daemon(tmp / "home", env)
        daemon.start()
        daemon_pid = daemon.pid
        try:
            target = FAST_TARGET
            shim = [PYTHON, "-m", "shim", "--no-autostart", "--socket", daemon.socket, "--", *target]
            argv_ = shim if args.variant == "shim" else target
            trace, pid, children = record(argv_, env, tmp, args.calls, args.warmup)
        finally:
            daemon.stop()
    names = {os.getpid(): "client", daemon_pid: "daemon", pid: "shim" if args.variant == "shim" else "target"}
    names.update(dict.fromkeys(children, "target"))
    print(report(parse(trace, names), args.quantile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
