"""The wrapped MCP server: start it, signal it, and know when it is gone.

The target runs in a process group of its own, so that the shutdown sequence (stdin closed, then
SIGTERM, then SIGKILL) reaches the processes it started too (``npx`` runs ``node``, ``uvx`` runs
python). Its stderr is the shim's stderr: log lines of any size pass untouched.
"""

from __future__ import annotations

import os
import subprocess
from signal import SIGKILL

from shim.loop import enlarge_pipe


class TargetStartError(Exception):
    """Raised when the target command cannot be started (not found, not executable...)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Target:
    """A running target process with its pipes as raw descriptors."""

    def __init__(self, argv: list[str]) -> None:
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                process_group=0,
            )
        except FileNotFoundError:
            raise TargetStartError(f"cannot start the target: command not found: {argv[0]}", 127) from None
        except PermissionError:
            raise TargetStartError(f"cannot start the target: permission denied: {argv[0]}", 126) from None
        except OSError as exc:
            raise TargetStartError(f"cannot start the target {argv[0]}: {exc.strerror or exc}", 126) from None
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self.stdin_fd = self._proc.stdin.fileno()
        self.stdout_fd = self._proc.stdout.fileno()
        enlarge_pipe(self.stdin_fd)
        enlarge_pipe(self.stdout_fd)
        self.pid = self._proc.pid

    def poll(self) -> int | None:
        """The exit status if the target has exited (shell-style: 128+N for signal N), else None."""
        code = self._proc.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the target's whole process group (while the target runs)."""
        if self._proc.poll() is None:
            self.kill_group(signum)

    def kill_group(self, signum: int = SIGKILL) -> None:
        """Signal whatever is in the target's process group, children that outlived it included."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
