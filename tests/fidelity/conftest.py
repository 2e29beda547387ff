"""Fixtures of the fidelity and hostility tests: one firewalld per module, shared by its tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Daemon
from helpers.fidelity import GUARDED, PERMISSIVE, write_policy


@pytest.fixture(scope="module")
def fdaemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A firewalld shared by the tests of one module (each test has its own shim, so its own session)."""
    home = tmp_path_factory.mktemp("home")
    daemon = Daemon(home)
    daemon.start()
    try:
        yield daemon
    finally:
        if daemon.proc is not None:
            daemon.stop()


@pytest.fixture(scope="module")
def permissive(fdaemon: Daemon) -> Path:
    """A policy that allows every call."""
    return write_policy(fdaemon.home, "permissive", PERMISSIVE)


@pytest.fixture(scope="module")
def guarded(fdaemon: Daemon) -> Path:
    """A policy that allows every call except the dangerous-sounding ones, which need approval."""
    return write_policy(fdaemon.home, "guarded", GUARDED)
