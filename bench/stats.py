"""Percentiles of one repetition, and the median/min/max of a metric over repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TypedDict


class Spread(TypedDict):
    """A metric over repetitions: its median, smallest and largest value, and how many there were."""

    median: float
    min: float
    max: float
    n: int


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, by linear interpolation."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def latency_summary(samples_us: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and the mean of one repetition's latencies (microseconds)."""
    ordered = sorted(samples_us)
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "mean": statistics.fmean(ordered) if ordered else math.nan,
    }


def spread(values: Sequence[float | None]) -> Spread | None:
    """Median, min and max of the values that were measured (None: not measured, e.g. a hang)."""
    real = [v for v in values if v is not None and not math.isnan(v)]
    if not real:
        return None
    return {"median": statistics.median(real), "min": min(real), "max": max(real), "n": len(real)}


def quantiles(samples: Sequence[float], points: int = 101) -> list[float]:
    """The distribution as ``points`` evenly spaced percentiles (for the JSON and the plot)."""
    ordered = sorted(samples)
    return [percentile(ordered, 100 * i / (points - 1)) for i in range(points)]
