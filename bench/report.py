"""Turn a run into numbers to read: spreads over repetitions, paired differences and ratios, budgets.

Differences and ratios are computed inside each repetition (the shim against the direct run of
the *same* repetition) and only then summarised, so slow and fast moments of the machine cancel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import Spread, quantiles, spread

#: (key, label, unit, scale): the table's rows. ``scale`` turns the stored unit into the shown one.
METRICS: list[tuple[str, str, str, float]] = [
    ("rt_p50_us", "round trip p50", "µs", 1),
    ("rt_p90_us", "round trip p90", "µs", 1),
    ("rt_p99_us", "round trip p99", "µs", 1),
    ("pipelined_cps", "calls/s, 8 in flight", "/s", 1),
    ("tput_60KB_MBps", "60 KB result", "MB/s", 1),
    ("tput_1MB_MBps", "1 MB result", "MB/s", 1),
    ("tput_10MB_MBps", "10 MB result", "MB/s", 1),
    ("cold_fast_ms", "cold start, fast target", "ms", 1),
    ("cold_fixture_ms", "cold start, SDK fixture", "ms", 1),
    ("first_call_us", "first call after start", "µs", 1),
    ("exit_ms", "exit after stdin closes", "ms", 1),
    ("exit_fixture_ms", "exit, SDK fixture", "ms", 1),
    ("rss_idle_kib", "peak RSS, idle", "MiB", 1 / 1024),
    ("rss_calls_kib", "peak RSS, after calls", "MiB", 1 / 1024),
    ("rss_peak_kib", "peak RSS, with 10 MB", "MiB", 1 / 1024),
]
DAEMON_METRICS: list[tuple[str, str, str]] = [
    ("saturated_rate", "200 sessions, saturated: decisions/s", "/s"),
    ("saturated_p50_us", "200 sessions, saturated: p50", "µs"),
    ("saturated_p99_us", "200 sessions, saturated: p99", "µs"),
    ("paced_rate", "200 sessions, 5,000/s offered: achieved", "/s"),
    ("paced_p50_us", "200 sessions, 5,000/s offered: p50", "µs"),
    ("paced_p99_us", "200 sessions, 5,000/s offered: p99", "µs"),
    ("pause_p50_us", "paused call round trip p50", "µs"),
    ("pause_p99_us", "paused call round trip p99", "µs"),
    ("list_pending_p50_us", "console ListPending p50", "µs"),
    ("confirm_p50_us", "confirm round trip p50 (runs the call)", "µs"),
    ("confirm_p99_us", "confirm round trip p99", "µs"),
    ("confirm_first10pct_us", "confirm, first 10% of cycles", "µs"),
    ("confirm_last10pct_us", "confirm, last 10% of cycles", "µs"),
]


def _paired(runs: dict[str, list[dict[str, Any]]], name: str, base: str, key: str, op: str) -> Spread | None:
    values: list[float | None] = []
    for row, ref in zip(runs.get(name, []), runs.get(base, []), strict=False):
        a, b = row.get(key), ref.get(key)
        if a is None or b is None or (op == "/" and not b):
            values.append(None)
        else:
            values.append(a - b if op == "-" else a / b)
    return spread(values)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Spreads of every metric, paired differences and ratios, and the budget lines."""
    runs: dict[str, list[dict[str, Any]]] = result["runs"]
    names = [v["name"] for v in result["variants"]]
    summary = {n: {k: spread([r.get(k) for r in runs[n]]) for k, *_ in METRICS} for n in names}
    vs: dict[str, dict[str, dict[str, Spread | None]]] = {}
    for n in names:
        vs[n] = {}
        for key, *_ in METRICS:
            vs[n][key] = {
                "minus_direct": _paired(runs, n, "direct", key, "-"),
                "x_direct": _paired(runs, n, "direct", key, "/"),
                "x_relay": _paired(runs, n, "relay", key, "/"),
            }
    daemon = {k: spread([r.get(k) for r in result["daemon_runs"]]) for k, *_ in DAEMON_METRICS}
    pause_added = [
        d["pause_p50_us"] - r["rt_p50_us"] if "pause_p50_us" in d and r.get("rt_p50_us") else None
        for d, r in zip(result["daemon_runs"], runs.get("direct", []), strict=False)
    ]
    daemon["pause_added_p50_us"] = spread(pause_added)
    return {"summary": summary, "vs": vs, "daemon": daemon, "budget": budget(vs, summary, daemon, result)}


_OPS: dict[str, Callable[[float, float], bool]] = {
    "≤": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "≥": lambda a, b: a >= b,
}


def budget(
    vs: dict[str, Any], summary: dict[str, Any], daemon: dict[str, Any], result: dict[str, Any]
) -> list[dict[str, Any]]:
    """DESIGN.md §7, line by line, each a ratio to (or a difference from) a variant measured in
    the same repetitions: the Python byte relay, or for the 100-rule policy the default policy
    with every call asked about (its rules test the arguments, so it runs without a lease)."""
    lines: list[dict[str, Any]] = []

    def add(what: str, value: Spread | None, op: str, limit: float, unit: str) -> None:
        med = value["median"] if value else None
        lines.append(
            {
                "line": what,
                "median": med,
                "min": value["min"] if value else None,
                "max": value["max"] if value else None,
                "n": value["n"] if value else 0,
                "op": op,
                "limit": limit,
                "unit": unit,
                "ok": None if med is None else _OPS[op](med, limit),
            }
        )

    runs: dict[str, list[dict[str, Any]]] = result["runs"]
    if "shim" in vs and "relay" in vs:
        add(
            "shim: added p50 ÷ relay's added p50",
            _added_ratio(runs, "shim", "relay", "rt_p50_us"),
            "≤",
            1.5,
            "×",
        )
        add(
            "shim: added p99 ÷ relay's added p99",
            _added_ratio(runs, "shim", "relay", "rt_p99_us"),
            "≤",
            2.0,
            "×",
        )
        add("shim: calls/s, 8 in flight ÷ relay's", vs["shim"]["pipelined_cps"]["x_relay"], "≥", 0.8, "×")
        add("shim: 10 MB throughput ÷ relay's", vs["shim"]["tput_10MB_MBps"]["x_relay"], "≥", 0.9, "×")
        for key, what in (("cold_fixture_ms", "SDK fixture"), ("cold_fast_ms", "fast target")):
            add(
                f"shim: cold start added − relay's added ({what})",
                _paired(runs, "shim", "relay", key, "-"),
                "≤",
                15,
                "ms",
            )
    if "shim100" in vs and "shimrt" in vs:
        add(
            "shim100: added p50 ÷ default policy's, asked (shimrt)",
            _added_ratio(runs, "shim100", "shimrt", "rt_p50_us"),
            "≤",
            1.2,
            "×",
        )
    if "shim" in vs:
        add("shim: exit after stdin closes", summary["shim"]["exit_ms"], "≤", 50, "ms")
        add("shim: peak RSS (with a 10 MB result)", _mib(summary["shim"]["rss_peak_kib"]), "<", 25, "MiB")
        add("shim: peak RSS (calls only)", _mib(summary["shim"]["rss_calls_kib"]), "<", 25, "MiB")
    add("daemon: 200 sessions, achieved of 5,000/s", daemon.get("paced_rate"), "≥", 5000 * 0.98, "/s")
    add("daemon: 200 sessions at 5,000/s, p99", _scaled(daemon.get("paced_p99_us"), 1e-3), "<", 10, "ms")
    return lines


def _added_ratio(runs: dict[str, list[dict[str, Any]]], name: str, base: str, key: str) -> Spread | None:
    """Per repetition, what ``name`` adds over direct divided by what ``base`` adds; then spread.

    What ``base`` adds is taken as at least 1 µs: on a loaded host a p99 of the relay can come
    out below direct's, and a ratio to a negative number would read as a pass.
    """
    values: list[float | None] = []
    for row, ref, direct in zip(runs.get(name, []), runs.get(base, []), runs.get("direct", []), strict=False):
        a, b, d = row.get(key), ref.get(key), direct.get(key)
        if a is None or b is None or d is None:
            values.append(None)
        else:
            values.append((a - d) / max(b - d, 1.0))
    return spread(values)


def _scaled(value: Spread | None, factor: float) -> Spread | None:
    if value is None:
        return None
    return {
        "median": value["median"] * factor,
        "min": value["min"] * factor,
        "max": value["max"] * factor,
        "n": value["n"],
    }


def _mib(value: Spread | None) -> Spread | None:
    return _scaled(value, 1 / 1024)


def save_json(result: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    """Write everything (raw runs, summaries, distributions as 101 percentiles) to ``path``."""
    data = {k: v for k, v in result.items() if k not in ("samples", "load_samples")}
    data.update(derived)
    data["distributions"] = {
        "round_trip_us": {n: quantiles(s) for n, s in result["samples"].items() if s},
        "daemon_decision_us": {n: quantiles(s) for n, s in result["load_samples"].items() if s},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    tmp.replace(path)
