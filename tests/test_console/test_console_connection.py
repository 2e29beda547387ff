"""The console's daemon link, without the UI: reconnect with backoff, event-driven refresh, no lost events."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from textual.message import Message

from conftest import Daemon
from console.client import ConsoleClient, ConsoleError
from console.connection import DaemonBackend, backoff
from console.messages import Connected, Disconnected, PendingChanged
from console.model import HistoryQuery
from daemon import protocol as p


@contextmanager
def watching(backend: DaemonBackend) -> Iterator[list[Message]]:
    """Run ``backend.watch`` in a thread, as the app's worker does; stop it (promptly) afterwards."""
    posted: list[Message] = []
    stop = threading.Event()
    thread = threading.Thread(target=backend.watch, args=(posted.append, stop), name="watch")
    thread.start()
    try:
        yield posted
    finally:
        stop.set()
        thread.join(timeout=2.0)
        assert not thread.is_alive(), "watch() did not stop within 2 s of being told to"


def wait(predicate: Callable[[], object], limit: float = 10.0) -> None:
    """Block until ``predicate()`` holds (the watcher is a thread: nothing to await)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


M = TypeVar("M", bound=Message)


def of(kind: type[M], posted: list[Message]) -> list[M]:
    """The posted messages of one type."""
    return [m for m in list(posted) if isinstance(m, kind)]


def shim_hello(path: str) -> socket.socket:
    """Open a session as a shim would (the daemon then pushes a ``session`` event to consoles)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(p.encode(p.Hello(role=p.ROLE_SHIM, server_name="probe", target=["probe"], cwd="/")))
    return sock


def test_backoff_doubles_and_is_capped() -> None:
    """0.25 s, 0.5 s, 1 s, ... never more than 5 s between attempts."""
    assert [backoff(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_no_daemon_is_reported_and_retried(tmp_path: Path) -> None:
    """Unreachable: one Disconnected per attempt, each saying why and when the next one is."""
    backend = DaemonBackend(str(tmp_path / "nobody.sock"), timeout=1.0)
    with watching(backend) as posted:
        wait(lambda: len(of(Disconnected, posted)) >= 3)
    first, second, third = of(Disconnected, posted)[:3]
    assert [m.attempt for m in (first, second, third)] == [1, 2, 3]
    assert [m.retry_in for m in (first, second, third)] == [0.25, 0.5, 1.0]
    assert "firewalld is not running" in first.reason


def test_refresh_retries_at_once(tmp_path: Path) -> None:
    """`r` does not wait out the backoff."""
    backend = DaemonBackend(str(tmp_path / "nobody.sock"), timeout=1.0)
    with watching(backend) as posted:
        wait(lambda: len(of(Disconnected, posted)) >= 4)  # now waiting 2 s
        started = time.monotonic()
        backend.refresh()
        wait(lambda: len(of(Disconnected, posted)) >= 5)
        assert time.monotonic() - started < 1.0


def test_connects_then_refreshes_on_every_event(daemon: Daemon) -> None:
    """Connected, a first state, then one fresh state per pushed event (and per refresh)."""
    backend = DaemonBackend(daemon.socket)
    with watching(backend) as posted:
        wait(lambda: of(PendingChanged, posted))
        assert isinstance(posted[0], Connected) and posted[0].socket_path == daemon.socket
        first = of(PendingChanged, posted)[0]
        assert first.kinds == {"connected"} and first.state.sessions == ()
        with shim_hello(daemon.socket):
            wait(lambda: of(PendingChanged, posted)[-1].state.sessions)
            assert "session" in of(PendingChanged, posted)[-1].kinds
        # The shim hangs up: another event, another state, with the session closed.
        wait(lambda: not of(PendingChanged, posted)[-1].state.sessions[0].connected)
        count = len(of(PendingChanged, posted))
        backend.refresh()
        wait(lambda: len(of(PendingChanged, posted)) > count)
        assert of(PendingChanged, posted)[-1].kinds == {"refresh"}


def test_requests_fail_cleanly_without_a_daemon(tmp_path: Path) -> None:
    """Deny and history raise ConsoleError (which the app turns into a notification), nothing else."""
    backend = DaemonBackend(str(tmp_path / "nobody.sock"))
    with pytest.raises(ConsoleError, match="not running"):
        backend.deny("A-1")
    with pytest.raises(ConsoleError, match="not running"):
        backend.history(HistoryQuery(), 10)


def test_history_applies_words_after_the_daemon_filter(daemon: Daemon) -> None:
    """Exact filters go to the daemon; free words are matched on what comes back."""
    with shim_hello(daemon.socket) as sock:
        sock.recv(4096)  # the welcome: the session is open and audited
    backend = DaemonBackend(daemon.socket)
    wait(lambda: backend.history(HistoryQuery(server="probe"), 10))
    assert {e.event for e in backend.history(HistoryQuery(server="probe"), 10)} >= {"session_open"}
    assert backend.history(HistoryQuery(server="nope"), 10) == ()
    assert backend.history(HistoryQuery(server="probe", words=("no-such-word",)), 10) == ()


def test_events_pushed_during_a_request_are_kept() -> None:
    """An event that arrives while the client waits for an answer is not dropped."""
    ours, theirs = socket.socketpair()
    client = ConsoleClient("/unused")
    client._sock = ours  # a connected client, its daemon played by the test
    try:
        theirs.sendall(p.encode(p.Event("pending", "A-1")) + p.encode(p.PendingList(1, [], [])))
        assert client.pending().rid == 1
        event = client.next_event(0.0)
        assert event is not None and event.detail == "A-1"
        assert client.next_event(0.05) is None
    finally:
        client.close()
        theirs.close()
