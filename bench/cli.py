"""``python -m bench``: measure, print the tables, save ``bench/results/latest.json`` and ``latest.png``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.plan import FULL, QUICK
from bench.plot import save_png
from bench.report import save_json, summarise
from bench.run import run
from bench.table import render
from bench.variants import setup_seed

EPILOG = """\
variants: direct (the target alone), relay (bench/relay.py), seed (mcp-action-firewall 0.3.0 from
PyPI, in bench/.seed-venv), shim (this project's shim and daemon, default policy: allowed calls
under a lease), shimrt (the same, --no-leases: every call asked about), shim100 (a 100-rule policy
whose rules test the calls' arguments, so no lease). Set the seed up once with --setup-seed.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 1 if a measurement failed (or, with --check-budget, a budget line missed)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, epilog=EPILOG)
    parser.add_argument(
        "--quick", action="store_true", help="a few hundred calls, one repetition, no seed (CI)"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 5; 1 with --quick)")
    parser.add_argument("--no-seed", action="store_true", help="do not run the seed even if it is installed")
    parser.add_argument("--only", help="comma-separated variants to run besides direct (e.g. relay,shim)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="CHECKOUT",
        help="also run the shim and daemon of another checkout (a proposed change), interleaved",
    )
    parser.add_argument("--check-budget", action="store_true", help="exit 1 if a DESIGN.md §7 line is missed")
    parser.add_argument(
        "--setup-seed", action="store_true", help="install the seed into bench/.seed-venv and exit"
    )
    args = parser.parse_args(argv)
    if args.setup_seed:
        return setup_seed()
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    if args.no_seed:
        plan = replace(plan, seed=False)
    if args.out:
        plan = replace(plan, out_dir=args.out)
    if args.compare:
        plan = replace(plan, compare=args.compare.resolve())
    only = args.only.split(",") if args.only else None
    result = run(plan, only, log=lambda line: print(line, file=sys.stderr, flush=True))
    derived = summarise(result)
    save_json(result, derived, plan.out_dir / "latest.json")
    why_no_png = save_png(result, derived, plan.out_dir / "latest.png")
    if why_no_png:
        result["notes"].append(why_no_png)
    print(render(result, derived))
    print(
        f"\nsaved {plan.out_dir / 'latest.json'}"
        + ("" if why_no_png else f" and {plan.out_dir / 'latest.png'}")
    )
    if result["errors"]:
        return 1
    if args.check_budget and any(line["ok"] is False for line in derived["budget"]):
        return 1
    return 0
