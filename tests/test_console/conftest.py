"""Fixtures shared by the console tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.tmux import Tmux


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """A private tmux server, killed after the test."""
    server = Tmux()
    try:
        yield server
    finally:
        server.kill()
