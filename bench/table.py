"""The printed report: one table per question, medians with (min–max) over repetitions."""

from __future__ import annotations

import math
from typing import Any

from bench.report import DAEMON_METRICS, METRICS
from bench.stats import Spread

_ADDED = [
    ("rt_p50_us", "round trip p50, added", "µs"),
    ("rt_p99_us", "round trip p99, added", "µs"),
    ("cold_fixture_ms", "cold start SDK, added", "ms"),
    ("cold_fast_ms", "cold start fast, added", "ms"),
]
_RATIOS = [
    "rt_p50_us",
    "rt_p99_us",
    "pipelined_cps",
    "tput_60KB_MBps",
    "tput_1MB_MBps",
    "tput_10MB_MBps",
    "cold_fixture_ms",
    "exit_ms",
    "rss_peak_kib",
]


def num(value: float | None) -> str:
    """A number in as few characters as its size needs."""
    if value is None or math.isnan(value):
        return "—"
    size = abs(value)
    if size >= 10_000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(value: Spread | None, scale: float = 1.0, missing: str = "—") -> str:
    """``median (min–max)``, or just the median when there was one repetition."""
    if value is None:
        return missing
    med = num(value["median"] * scale)
    if value["n"] < 2:
        return med
    return f"{med} ({num(value['min'] * scale)}–{num(value['max'] * scale)})"


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def render(result: dict[str, Any], derived: dict[str, Any]) -> str:
    """The whole printed report."""
    names = [v["name"] for v in result["variants"]]
    labels = {v["name"]: v["label"] for v in result["variants"]}
    runs, summary, vs = result["runs"], derived["summary"], derived["vs"]
    meta = result["meta"]
    out = [
        f"MCP Action Firewall benchmark — {meta['started']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"kernel {meta.get('kernel', '?')}, load {meta['load_average'][0]:.2f}, "
        f"{meta['plan']['reps']} repetition(s), {meta['seconds']} s",
        "cells: median (min–max) over repetitions; failed: no answer (a hang or an exit); —: not measured",
        "",
    ]
    rows = []
    for line in derived["budget"]:
        verdict = {True: "ok", False: "MISSED", None: "not measured"}[line["ok"]]
        shown = "—"
        if line["median"] is not None:
            shown = cell({"median": line["median"], "min": line["min"], "max": line["max"], "n": line["n"]})
        rows.append([line["line"], shown, f"{line['op']} {num(line['limit'])} {line['unit']}", verdict])
    out += [
        "budget (DESIGN.md §7), as ratios to variants measured in the same interleaved run",
        _grid(["line", "measured", "budget", ""], rows),
        "",
    ]
    rows = []
    for key, label, unit, scale in METRICS:
        failed = {n for n in names if any(key in r and r[key] is None for r in runs[n])}
        rows.append(
            [f"{label} [{unit}]"]
            + [cell(summary[n][key], scale, "failed" if n in failed else "—") for n in names]
        )
    for key, label, unit in _ADDED:
        rows.append(
            [f"{label} [{unit}]"]
            + [cell(vs[n][key]["minus_direct"]) if n != "direct" else "0" for n in names]
        )
    out += [_grid(["metric"] + [labels[n] for n in names], rows), ""]

    rows = []
    for key in _RATIOS:
        label = next(m[1] for m in METRICS if m[0] == key)
        rows.append(
            [label]
            + [
                f"{num(_med(vs[n][key]['x_direct']))} / {num(_med(vs[n][key]['x_relay']))}"
                for n in names
                if n != "direct"
            ]
        )
    out += [
        "ratios, per repetition then median: ×direct / ×relay",
        _grid(["metric"] + [labels[n] for n in names if n != "direct"], rows),
        "",
    ]

    daemon = derived["daemon"]
    rows = [[f"{label} [{unit}]", cell(daemon.get(key))] for key, label, unit in DAEMON_METRICS]
    rows.append(["paused call p50, added over direct [µs]", cell(daemon.get("pause_added_p50_us"))])
    rss = result.get("daemon_rss_kib")
    rows.append(["daemon peak RSS, end of run [MiB]", num(rss / 1024) if rss else "—"])
    out += ["the daemon", _grid(["metric", "value"], rows), ""]

    out += [f"note: {n}" for n in result["notes"]]
    out += [f"error: {e}" for e in result["errors"]]
    return "\n".join(out)


def _med(value: Spread | None) -> float | None:
    return value["median"] if value else None
