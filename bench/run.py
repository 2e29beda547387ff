"""One benchmark run: a temporary HOME, one daemon, every variant measured repetition by repetition.

Inside a repetition the phases run one after the other, and each phase runs every variant before
the next phase starts, in an order that rotates with the repetition; so a burst of noise on the
machine lands on every variant alike instead of on whichever happened to run then.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.approval import approvals
from bench.load import Sessions
from bench.measure import Context, cold_fast, cold_fixture, work
from bench.plan import Plan
from bench.rules import check_rules_config, write_rules_config
from bench.stats import latency_summary
from bench.variants import Daemon, Variant, build_variants, compare_variants, minimal_env, seed_status

Phase = Callable[[Context, Variant], dict[str, Any]]


def run(plan: Plan, only: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark and return everything measured (see :mod:`bench.report` for the shape)."""
    tmp = Path(tempfile.mkdtemp(prefix="fwbench-"))
    home, logs = tmp / "home", tmp / "logs"
    home.mkdir()
    logs.mkdir()
    env = minimal_env(home)
    # The pause/confirm test makes more prompts a minute than the flood limit lets a session make.
    daemon = Daemon(home, {**env, "FIREWALLD_MAX_PROMPTS_PER_MINUTE": "1000000"})
    rules = write_rules_config(tmp / "rules100.json")
    notes: list[str] = [f"100-rule policy: {check_rules_config(rules)} of its rules are tested on every call"]
    why_not = seed_status() if plan.seed else "skipped (--no-seed or --quick)"
    if why_not:
        notes.append(f"seed: {why_not}")
    variants = build_variants(daemon.socket, rules, seed=why_not is None)
    other: Daemon | None = None
    if plan.compare is not None:
        (tmp / "home-b").mkdir()
        env_b = minimal_env(tmp / "home-b", plan.compare)
        other = Daemon(tmp / "home-b", env_b)
        tag = plan.compare.name
        variants += compare_variants(other.socket, rules, {"PYTHONPATH": env_b["PYTHONPATH"]}, tag)
        notes.append(f"@{tag}: the shim and daemon of {plan.compare}, with a daemon of their own")
    if only:
        variants = [v for v in variants if v.name.split("@")[0] in only or v.name == "direct"]
    ctx = Context(env=env, cwd=home, logs=logs, plan=plan)
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    daemon_runs: list[dict[str, Any]] = []
    load_samples: dict[str, list[float]] = {"saturation": [], "paced": []}
    errors: list[str] = []
    started = time.time()
    daemon.start()
    if other is not None:
        other.start()
    try:
        for rep in range(plan.reps):
            shift = rep % len(variants)
            order = variants[shift:] + variants[:shift]
            rows: dict[str, dict[str, Any]] = {v.name: {} for v in variants}
            phases: list[tuple[str, Phase]] = [("cold start", cold_fast)]
            if plan.fixture_cold:
                phases.append(("cold start, SDK fixture", cold_fixture))
            phases.append(("round trips and throughput", _work_into(samples)))
            for title, phase in phases:
                log(f"rep {rep + 1}/{plan.reps}: {title}: " + ", ".join(v.name for v in order))
                for variant in order:
                    try:
                        rows[variant.name].update(phase(ctx, variant))
                    except Exception as exc:  # noqa: BLE001 - recorded, and the run goes on
                        errors.append(f"rep {rep + 1} {title} {variant.name}: {type(exc).__name__}: {exc}")
                        log(f"  {variant.name} failed: {exc}")
            for name, row in rows.items():
                runs[name].append(row)
            log(f"rep {rep + 1}/{plan.reps}: daemon with {plan.sessions} sessions, pause and confirm")
            try:
                daemon_runs.append(_daemon_rep(ctx, daemon, variants, load_samples))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"rep {rep + 1} daemon: {type(exc).__name__}: {exc}")
                log(f"  daemon tests failed: {exc}")
        daemon_rss = daemon.peak_rss_kib()
    finally:
        daemon.stop()
        if other is not None:
            other.stop()
    if errors:
        notes.append(f"logs of the failed run are in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "meta": _meta(plan, started),
        "variants": [{"name": v.name, "label": v.label} for v in variants],
        "runs": runs,
        "daemon_runs": daemon_runs,
        "daemon_rss_kib": daemon_rss,
        "notes": notes,
        "errors": errors,
        "samples": samples,
        "load_samples": load_samples,
    }


def _work_into(samples: dict[str, list[float]]) -> Phase:
    def phase(ctx: Context, variant: Variant) -> dict[str, Any]:
        metrics, latencies = work(ctx, variant)
        samples[variant.name] += latencies
        return metrics

    return phase


def _daemon_rep(
    ctx: Context, daemon: Daemon, variants: list[Variant], load_samples: dict[str, list[float]]
) -> dict[str, Any]:
    plan = ctx.plan
    out: dict[str, Any] = {}
    sessions = Sessions(daemon.socket, plan.sessions)
    try:
        sat = sessions.saturate(plan.saturate_s)
        paced = sessions.paced(plan.paced_rate, plan.paced_s)
    finally:
        sessions.close()
    out["saturated_rate"] = sat["rate"]
    out.update({f"saturated_{k}_us": v for k, v in latency_summary(sat["latencies_us"]).items()})
    out["paced_rate"] = paced["rate"]
    out.update({f"paced_{k}_us": v for k, v in latency_summary(paced["latencies_us"]).items()})
    load_samples["saturation"] += sat["latencies_us"]
    load_samples["paced"] += paced["latencies_us"]
    shim = next((v for v in variants if v.name == "shim"), None)
    if shim is not None and plan.approvals:
        out.update(approvals(ctx, shim, daemon.socket, plan.approvals))
    return out


def _meta(plan: Plan, started: float) -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
        "plan": {
            "reps": plan.reps,
            "sequential_calls": plan.seq_calls,
            "warmup": plan.warmup,
            "pipelined_calls": plan.pipelined_calls,
            "depth": plan.depth,
            "blobs": [list(b) for b in plan.blobs],
            "sessions": plan.sessions,
            "paced_rate": plan.paced_rate,
            "approvals": plan.approvals,
            "compare": str(plan.compare) if plan.compare else None,
        },
    }
