"""The benchmark's quick mode runs to the end and writes results of the right shape (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_completes(tmp_path: Path) -> None:
    """`python -m bench --quick` measures every variant but the seed and saves its JSON (and PNG)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "budget (DESIGN.md §7)" in proc.stdout

    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["errors"] == []
    names = [v["name"] for v in data["variants"]]
    assert names == ["direct", "relay", "shim", "shimrt", "shim100"]
    for name in names:
        (row,) = data["runs"][name]
        for key in ("rt_p50_us", "rt_p99_us", "pipelined_cps", "tput_10MB_MBps", "cold_fast_ms", "exit_ms"):
            assert isinstance(row[key], float) and row[key] > 0, (name, key, row.get(key))
        assert data["summary"][name]["rt_p50_us"]["n"] == 1
        assert len(data["distributions"]["round_trip_us"][name]) == 101
    (daemon,) = data["daemon_runs"]
    assert daemon["saturated_rate"] > 0 and daemon["paced_rate"] > 0
    assert daemon["pause_p50_us"] > 0 and daemon["confirm_p50_us"] > 0
    assert {line["ok"] for line in data["budget"]} <= {True, False}
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")


def test_ab_compares_a_tree_with_the_target_alone() -> None:
    """`python -m bench.ab TREE` runs each variant, round by round, and prints one row per variant."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ab", str(ROOT), "--rounds", "2", "--calls", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    header, direct, tree = proc.stdout.splitlines()
    assert header.split()[:4] == ["variant", "p50", "p90", "p99"]
    assert direct.split()[0] == "direct" and float(direct.split()[4]) == 0.0
    assert tree.split()[0] == str(ROOT) and all(float(x) > 0 for x in tree.split()[1:4])
