"""How much of everything one run measures: the full run, and the quick one used in CI."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

KB = 1000
MB = 1000 * KB


@dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run. Counts are per variant per repetition."""

    reps: int = 5
    warmup: int = 300
    seq_calls: int = 3000
    depth: int = 8
    pipelined_calls: int = 40_000
    pipelined_cap_s: float = 1.5
    #: (result size in bytes, calls) for the throughput test, smallest first.
    blobs: tuple[tuple[int, int], ...] = ((60 * KB, 40), (1 * MB, 10), (10 * MB, 3))
    blob_timeout_s: float = 6.0
    fixture_cold: bool = True
    sessions: int = 200
    saturate_s: float = 2.0
    paced_rate: int = 5000
    paced_s: float = 2.0
    approvals: int = 100
    seed: bool = True
    #: Another checkout whose shim and daemon run as two more variants (an interleaved A/B).
    compare: Path | None = None
    out_dir: Path = field(default=Path(__file__).resolve().parent / "results")

    @property
    def total_calls(self) -> int:
        """Tool calls per variant per repetition (for the report header)."""
        return self.warmup + self.seq_calls + self.pipelined_calls + sum(n for _, n in self.blobs)


FULL = Plan()
QUICK = replace(
    FULL,
    reps=1,
    warmup=50,
    seq_calls=200,
    pipelined_calls=200,
    pipelined_cap_s=1.0,
    blobs=((60 * KB, 3), (1 * MB, 2), (10 * MB, 1)),
    saturate_s=0.3,
    paced_s=0.3,
    approvals=5,
    seed=False,
)
