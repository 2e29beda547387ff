"""Where the time goes: ``python -m bench.profile`` samples the shim and the daemon with py-spy.

It starts a daemon and a shim in front of the fast target (as the benchmark does), drives one
workload for a few seconds (``seq``: one call at a time; ``pipelined``: 8 in flight) while
``py-spy record`` samples both processes, then prints the functions with the most samples,
by own time and including callees. The raw collapsed stacks are kept in
``bench/results/profile-<workload>-<process>.txt`` (feed them to flamegraph.pl or speedscope).

py-spy is not a dependency: ``pip install py-spy``. It needs ptrace rights over the processes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import BENCH_DIR
from bench.measure import Context
from bench.peer import INITIALIZED, Peer, call_line, initialize_line
from bench.plan import FULL
from bench.rules import write_rules_config
from bench.variants import FAST_TARGET, Daemon, build_variants, minimal_env


def _drive(peer: Peer, workload: str, seconds: float) -> int:
    """Run the workload for ``seconds``; returns the number of calls answered."""
    end = time.monotonic() + seconds
    n = 0
    if workload == "seq":
        while time.monotonic() < end:
            peer.send(call_line(n, "get_value", {"key": f"k{n}"}) + b"\n")
            peer.recv()
            n += 1
        return n
    peer.send(b"".join(call_line(i, "get_value", {"key": "k"}) + b"\n" for i in range(8)))
    sent = 8
    while n < sent:
        answered = peer.recv_batch().count(b"\n") + 1
        n += answered
        if time.monotonic() < end:
            peer.send(
                b"".join(call_line(sent + i, "get_value", {"key": "k"}) + b"\n" for i in range(answered))
            )
            sent += answered
    return n


def summarise(raw: Path, top: int) -> str:
    """The functions with the most samples in a py-spy raw file, by own time and inclusive."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        total += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{raw.name}: {total} samples (active threads only)", "  own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["  including callees:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--workload", choices=["seq", "pipelined"], default="seq")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rules", action="store_true", help="use the 100-rule policy")
    parser.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    parser.add_argument("--gil", action="store_true", help="only the thread holding the GIL (py-spy --gil)")
    parser.add_argument(
        "--blocking", action="store_true", help="pause the process per sample (exact, slower)"
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="fwprofile-"))
    (tmp / "home").mkdir()
    env = minimal_env(tmp / "home")
    daemon = Daemon(tmp / "home", env)
    variants = build_variants(daemon.socket, write_rules_config(tmp / "rules.json"), seed=False)
    shim = next(v for v in variants if v.name == ("shim100" if args.rules else "shim"))
    ctx = Context(env=env, cwd=tmp / "home", logs=tmp, plan=FULL)
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    daemon.start()
    peer = ctx.spawn(shim, FAST_TARGET)
    try:
        peer.send(initialize_line(0) + b"\n")
        peer.recv(30)
        peer.send(INITIALIZED + b"\n")
        _drive(peer, "seq", 0.5)  # connect to the daemon and warm up
        spies = []
        for name, pid in (("shim", peer.pid), ("daemon", daemon.pid)):
            raw = out_dir / f"profile-{args.workload}-{name}.txt"
            cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw)]
            cmd += ["--rate", "1000", "--duration", str(int(args.seconds))]
            cmd += [flag for flag, on in (("--native", args.native), ("--gil", args.gil)) if on]
            cmd += [] if args.blocking else ["--nonblocking"]
            spies.append((raw, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(0.5)  # let py-spy attach
        start = time.monotonic()
        calls = _drive(peer, args.workload, args.seconds - 0.5)
        rate = calls / (time.monotonic() - start)
        for _, spy_proc in spies:
            spy_proc.wait(60)
    finally:
        peer.kill()
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.workload}: {calls} calls, {rate:,.0f} calls/s while sampled (sampling slows both down)\n")
    for raw, _ in spies:
        print(summarise(raw, args.top) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
