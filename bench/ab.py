"""A quick A/B of the allowed-call round trip: ``python -m bench.ab TREE [TREE ...]``.

For deciding whether a change to the shim or the daemon moves the median by a few microseconds,
which a full run's five repetitions cannot tell from noise. Each TREE is a checkout (its shim
and its daemon, with a daemon of its own; ``TREE:NAME=VALUE,...`` adds environment variables).
Every round spawns each variant and the target alone, in a random order, for ``--calls``
sequential calls after a warm-up; the report is the median over rounds of each variant's p50,
p90 and p99, and of its p50 minus the direct p50 of the same round. ``--cold`` times spawn to
the ``initialize`` answer instead (one sample per variant per round); ``--relay`` adds the byte relay.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import BENCH_DIR
from bench.peer import INITIALIZED, Peer, call_line, initialize_line
from bench.variants import FAST_TARGET, PYTHON, Daemon, minimal_env

_WARMUP = 500
RELAY = BENCH_DIR / "relay.py"


def _round(argv: list[str], env: dict[str, str], cwd: Path, calls: int) -> tuple[float, float, float]:
    """p50, p90 and p99 in µs of ``calls`` sequential calls through ``argv``."""
    peer = Peer(argv, env, cwd, cwd / "variant.stderr")
    try:
        peer.send(initialize_line() + b"\n")
        peer.recv(30)
        peer.send(INITIALIZED + b"\n")
        samples = []
        for i in range(_WARMUP + calls):
            line = call_line(1000 + i, "get_value", {"key": f"k{i}"}) + b"\n"
            start = time.perf_counter_ns()
            peer.send(line)
            peer.recv()
            if i >= _WARMUP:
                samples.append((time.perf_counter_ns() - start) / 1e3)
    finally:
        peer.kill()
    samples.sort()
    return tuple(samples[int(len(samples) * q)] for q in (0.5, 0.9, 0.99))  # type: ignore[return-value]


def _cold(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """Spawn to the ``initialize`` answer through ``argv``, in µs (as p50, p90 and p99 alike)."""
    peer = Peer(argv, env, cwd, cwd / "variant.stderr")
    try:
        peer.send(initialize_line() + b"\n")
        peer.recv(30)
        cold = (time.perf_counter_ns() - peer.spawned_ns) / 1e3
    finally:
        peer.kill()
    return cold, cold, cold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="checkouts to compare, as PATH or PATH:NAME=VALUE,...")
    parser.add_argument("--rounds", type=int, default=16, help="rounds (default 16)")
    parser.add_argument("--calls", type=int, default=1500, help="calls per variant per round (default 1500)")
    parser.add_argument("--cold", action="store_true", help="time spawn to the initialize answer instead")
    parser.add_argument("--relay", action="store_true", help="add the byte relay as a variant")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-ab-") as tmp_name:
        tmp = Path(tmp_name)
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "direct": (FAST_TARGET, minimal_env(tmp)),
        }
        if args.relay:
            variants["relay"] = ([PYTHON, str(RELAY), "--", *FAST_TARGET], minimal_env(tmp))
        daemons = []
        try:
            for n, spec in enumerate(args.trees):
                path, _, extra = spec.partition(":")
                home = tmp / f"home{n}"
                home.mkdir()
                env = minimal_env(
                    home,
                    Path(path).resolve(),
                    FIREWALLD_MAX_PROMPTS_PER_MINUTE="1000000",
                    **dict(item.split("=", 1) for item in extra.split(",") if item),
                )
                daemon = Daemon(home, env)
                daemon.start()
                daemons.append(daemon)
                shim = [PYTHON, "-m", "shim", "--no-autostart", "--socket", daemon.socket, "--"]
                variants[spec] = ([*shim, *FAST_TARGET], env)
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    command, env = variants[name]
                    if args.cold:
                        results[name].append(_cold(command, env, tmp))
                    else:
                        results[name].append(_round(command, env, tmp, args.calls))
        finally:
            for daemon in daemons:
                daemon.stop()
    direct = [r[0] for r in results["direct"]]
    width = max(len(name) for name in results)
    print(f"{'variant':{width}}  {'p50':>6}  {'p90':>6}  {'p99':>6}  p50 added over direct [µs]")
    for name, rows in results.items():
        added = [row[0] - d for row, d in zip(rows, direct, strict=True)]
        p50, p90, p99 = (statistics.median(row[i] for row in rows) for i in range(3))
        spread = f"{statistics.median(added):6.1f} (min {min(added):.0f}, max {max(added):.0f})"
        print(f"{name:{width}}  {p50:6.1f}  {p90:6.1f}  {p99:6.1f}  {spread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
