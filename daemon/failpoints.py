"""Named crash points for the crash tests: ``FIREWALLD_FAILPOINTS=confirm.approved,...`` makes the
daemon kill itself (SIGKILL, as an OOM killer or a power cut would) when it reaches one of them.

Unset, :func:`hit` is one frozenset lookup. The points are where a confirm can be cut: after the
approval is written but before its transaction commits, and after the commit but before the shim is
answered. Tests in ``tests/e2e/test_crash_points.py`` run a confirm to each and check that the call ran
at most once, the agent was told the truth and the audit agrees.
"""

from __future__ import annotations

import os
import signal

ENV = "FIREWALLD_FAILPOINTS"
POINTS = frozenset({"confirm.approved", "confirm.committed", "sigusr2.verdicts_changed"})

_armed = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip()) & POINTS


def armed(point: str) -> bool:
    """Whether ``point`` is armed (``sigusr2.verdicts_changed``: SIGUSR2 makes the daemon call
    ``verdicts_changed``, standing in for a grant or tool-pin change in tests)."""
    return point in _armed


def hit(point: str) -> None:
    """Die at ``point`` if it is armed."""
    if point in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
