"""What the console's screens look like, pinned as SVG snapshots (``pytest --snapshot-update`` to accept).

The app comes from the production factory, fed recorded states (:mod:`console.screenshots`) through
a replay backend and a frozen clock, so codes, countdowns and times never change between runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from console.model import DaemonState
from console.screenshots import (
    large_arguments_state,
    sample_app,
    sample_history,
    sample_state,
    settle,
)

SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """History times are local times: pin the zone so snapshots match anywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def keys(*pressed: str) -> Callable[[Pilot[Any]], Any]:
    """A run_before that waits for the data, then presses keys and waits again."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        if pressed:
            await pilot.press(*pressed)
            await settle(pilot)

    return run_before


def test_pending_with_selected_action(snap_compare: SnapCompare) -> None:
    """Three actions at 80x24, the second selected: its code, countdown (under 30 s) and arguments."""
    assert snap_compare(sample_app(sample_state()), terminal_size=(80, 24), run_before=keys("down"))


def test_pending_large_terminal(snap_compare: SnapCompare) -> None:
    """The same at 140x44: nothing stretched or cut."""
    assert snap_compare(sample_app(sample_state()), terminal_size=(140, 44), run_before=keys())


def test_large_arguments(snap_compare: SnapCompare) -> None:
    """Long strings wrap instead of being cut, hidden characters are spelt out, the view scrolls."""
    assert snap_compare(sample_app(large_arguments_state()), terminal_size=(80, 24), run_before=keys())


def test_large_arguments_scrolled(snap_compare: SnapCompare) -> None:
    """Tab to the arguments and page down: the rest of the file is there."""
    app = sample_app(large_arguments_state())
    assert snap_compare(app, terminal_size=(80, 24), run_before=keys("tab", "pagedown"))


def test_empty_state(snap_compare: SnapCompare) -> None:
    """Connected, nothing waiting: say so, and say what will appear here."""
    state = DaemonState(sample_state().sessions, ())
    assert snap_compare(sample_app(state), terminal_size=(80, 24), run_before=keys())


def test_daemon_unreachable(snap_compare: SnapCompare) -> None:
    """No daemon: why, and when the console tries again; no deny keys in the footer."""
    assert snap_compare(sample_app(unreachable=True), terminal_size=(80, 24), run_before=keys())


def test_light_theme(snap_compare: SnapCompare) -> None:
    """The light theme: every colour comes from the theme."""
    app = sample_app(sample_state())

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.theme = "textual-light"
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_deny_all_confirmation(snap_compare: SnapCompare) -> None:
    """`D` asks before denying everything."""
    assert snap_compare(sample_app(sample_state()), terminal_size=(80, 24), run_before=keys("D"))


def test_sessions(snap_compare: SnapCompare) -> None:
    """Sessions with their counters, connected ones first."""
    assert snap_compare(sample_app(sample_state()), terminal_size=(80, 24), run_before=keys("s"))


def test_history(snap_compare: SnapCompare) -> None:
    """The audit log, newest first."""
    app = sample_app(sample_state(), history=sample_history())
    assert snap_compare(app, terminal_size=(100, 24), run_before=keys("h"))


def test_grant_choice(snap_compare: SnapCompare) -> None:
    """`g` on the selected action: the four scopes, the arguments offered as matches, the minutes."""
    assert snap_compare(sample_app(sample_state()), terminal_size=(100, 32), run_before=keys("g"))


def test_grants_view(snap_compare: SnapCompare) -> None:
    """`G`: the live grants, what each lets through, where, until when and how often it was used."""
    from test_console.test_console_grants import sample_grants

    from console.app import build_app
    from console.replay import ReplayBackend
    from console.screenshots import NOW, SOCKET

    backend = ReplayBackend(sample_state(), socket_path=SOCKET, grants=sample_grants())
    app = build_app(SOCKET, backend=backend, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=(100, 24), run_before=keys("G"))


def test_flood_group(snap_compare: SnapCompare) -> None:
    """A chat with seven actions waiting is one row, with its count and tools."""
    from test_console.test_console_flood import flood_state

    assert snap_compare(sample_app(flood_state()), terminal_size=(100, 24), run_before=keys())
