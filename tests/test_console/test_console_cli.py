"""`firewall-console` with no subcommand opens the TUI, with the same socket discovery as the rest."""

from __future__ import annotations

import pytest

from console import app as console_app
from console.app import FirewallConsole, build_app
from console.cli import main
from console.connection import DaemonBackend
from daemon.protocol import default_socket_path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], (None, False)), (["--socket", "/x/y.sock", "--desktop-notify"], ("/x/y.sock", True))],
)
def test_bare_command_runs_the_tui(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: tuple[str | None, bool]
) -> None:
    """No subcommand: run_app gets the socket and the desktop-notification switch (off by default)."""
    calls: list[tuple[str | None, bool]] = []

    def fake_run_app(socket_path: str | None, *, desktop_notifications: bool = False) -> int:
        calls.append((socket_path, desktop_notifications))
        return 0

    monkeypatch.setattr(console_app, "run_app", fake_run_app)
    assert main(argv) == 0
    assert calls == [expected]


def test_factory_finds_the_socket_like_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """No --socket: the daemon's own rule (HOME, or FIREWALL_SOCKET) decides, as for `pending` and `deny`."""
    monkeypatch.setenv("HOME", "/home/someone")
    app = build_app(None)
    assert isinstance(app, FirewallConsole)
    assert isinstance(app.backend, DaemonBackend)
    assert (
        app.backend.socket_path
        == default_socket_path()
        == "/home/someone/.local/state/mcp-action-firewall/firewalld.sock"
    )
    assert not app.desktop_notifications
    assert build_app("/s.sock").backend.socket_path == "/s.sock"
