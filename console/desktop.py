"""Desktop notifications (off unless ``--desktop-notify``): notify-send on Linux, osascript on macOS.

Never the code: a notification can be read back by other programs of the same user, and a code
must only ever be on the console's screen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from console.model import visible


def _applescript(text: str) -> str:
    """``text`` as an AppleScript string literal (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def notification_command(title: str, body: str, platform: str = sys.platform) -> list[str] | None:
    """The command that shows a desktop notification here, or None if there is none."""
    if platform == "darwin":
        osascript = shutil.which("osascript")
        if osascript is None:
            return None
        script = f"display notification {_applescript(body)} with title {_applescript(title)}"
        return [osascript, "-e", script]
    notify_send = shutil.which("notify-send")
    if notify_send is None:
        return None
    return [notify_send, "--app-name=firewall-console", "--", title, body]


def desktop_notify(title: str, body: str) -> bool:
    """Show a desktop notification; returns False when none could be shown. Blocks briefly."""
    # Names in a notification come from the agent and the server: escaped like everything else.
    command = notification_command(visible(title), visible(body))
    if command is None:
        return False
    try:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
