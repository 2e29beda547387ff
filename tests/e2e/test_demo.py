"""The README's first command: the demo runs on a fresh machine with no configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Daemon


def test_demo_runs_and_every_step_behaves(home: Path) -> None:
    """`python -m console.demo` exits 0 and says so; it never shows the code in the agent's bytes."""
    result = subprocess.run(
        [sys.executable, "-m", "console.demo"],
        capture_output=True,
        text=True,
        env=Daemon(home).env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stdout
    assert "the code is in none of the" in result.stdout
    assert "Traceback" not in result.stderr
