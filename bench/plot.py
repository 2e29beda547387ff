"""The PNG: latency distributions, calls per second, throughput, start and exit, the daemon's latency.

matplotlib comes from the ``bench`` extra (``pip install -e '.[bench]'``); without it the run
still prints and saves its JSON, and says that the plot was skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import Spread

_COLORS = {
    "direct": "#4c72b0",
    "relay": "#8c8c8c",
    "seed": "#dd8452",
    "shim": "#55a868",
    "shimrt": "#a8d5b2",
    "shim100": "#2a6e3f",
}
_COMPARED = {"shim": "#c44e52", "shim100": "#8172b3"}  # the same variants from a --compare checkout


def _color(name: str) -> str:
    base, _, other = name.partition("@")
    return _COMPARED.get(base, "#999999") if other else _COLORS.get(name, "#999999")


def save_png(result: dict[str, Any], derived: dict[str, Any], path: Path) -> str | None:
    """Draw the run into ``path``; returns why not if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no PNG"
    names = [v["name"] for v in result["variants"]]
    labels = {v["name"]: v["label"] for v in result["variants"]}
    summary = derived["summary"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(f"MCP Action Firewall benchmark — {result['meta']['started']} (median, whiskers: min–max)")

    ax = axes[0][0]
    for n in names:
        samples = sorted(result["samples"].get(n, []))
        if samples:
            ys = [(i + 1) / len(samples) for i in range(len(samples))]
            ax.plot(samples, ys, label=labels[n], color=_color(n))
    ax.set(xscale="log", xlabel="round trip of an allowed tools/call [µs]", ylabel="fraction of calls")
    ax.set_title("sequential round trip, CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    _bars(axes[0][1], names, labels, [summary[n]["pipelined_cps"] for n in names], "calls/s, 8 in flight")
    relay_cps = summary.get("relay", {}).get("pipelined_cps")
    if relay_cps:  # the budget is a ratio to the relay of the same run
        axes[0][1].axhline(0.8 * relay_cps["median"], color="red", ls="--", lw=1, label="0.8 × relay")

    ax = axes[0][2]
    trans = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    sizes = [("tput_60KB_MBps", "60 KB"), ("tput_1MB_MBps", "1 MB"), ("tput_10MB_MBps", "10 MB")]
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [j + i * width for j in range(len(sizes))]
        values = [summary[n][key] for key, _ in sizes]
        ax.bar(xs, [_med(v) for v in values], width, yerr=_err(values), label=labels[n], color=_color(n))
        for x, v in zip(xs, values, strict=True):
            if v is None:
                ax.text(x, 0.02, "hang", rotation=90, ha="center", va="bottom", fontsize=7, transform=trans)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [s for _, s in sizes])
    ax.set(ylabel="MB/s", yscale="log", title="throughput of one result")
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(1.0, 0.0))

    ax = axes[1][0]
    for i, (key, title) in enumerate([("cold_fast_ms", "fast target"), ("cold_fixture_ms", "SDK fixture")]):
        values = [summary[n][key] for n in names]
        xs = [j + i * 0.4 for j in range(len(names))]
        ax.bar(xs, [_med(v) for v in values], 0.4, yerr=_err(values), label=title)
    ax.set_xticks([j + 0.2 for j in range(len(names))], [labels[n] for n in names], rotation=15, fontsize=8)
    ax.set(ylabel="ms", title="cold start: spawn to initialize answer")
    ax.legend(fontsize=8)

    _bars(axes[1][1], names, labels, [summary[n]["exit_ms"] for n in names], "exit after stdin closes [ms]")
    axes[1][1].set_yscale("log")

    ax = axes[1][2]
    for kind, samples in result["load_samples"].items():
        ordered = sorted(samples)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=kind)
    ax.axvline(10_000, color="red", ls="--", lw=1, label="p99 budget")
    ax.set(xscale="log", xlabel="decision latency [µs]", ylabel="fraction", title="daemon, 200 sessions")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _med(value: Spread | None) -> float:
    return value["median"] if value else 0.0


def _err(values: list[Spread | None]) -> list[list[float]]:
    return [
        [v["median"] - v["min"] if v else 0.0 for v in values],
        [v["max"] - v["median"] if v else 0.0 for v in values],
    ]


def _bars(ax: Any, names: list[str], labels: dict[str, str], values: list[Spread | None], title: str) -> None:
    ax.bar(
        range(len(names)),
        [_med(v) for v in values],
        yerr=_err(values),
        color=[_color(n) for n in names],
    )
    ax.set_xticks(range(len(names)), [labels[n] for n in names], rotation=15, fontsize=8)
    ax.set_title(title)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.plot [JSON]``: draw the PNG again from a saved run (its distributions are
    kept as 101 percentiles, which is what the plot needs), next to the JSON."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "bench/results/latest.json")
    data = json.loads(path.read_text())
    data["samples"] = data["distributions"]["round_trip_us"]
    data["load_samples"] = data["distributions"]["daemon_decision_us"]
    why_not = save_png(data, data, path.with_suffix(".png"))
    print(why_not or f"saved {path.with_suffix('.png')}")
    return 1 if why_not else 0


if __name__ == "__main__":
    raise SystemExit(main())
