"""The wrapped MCP server: start it, and make sure it never outlives the shim.

The target runs in a process group of its own, so that the shutdown sequence (stdin closed, then
SIGTERM, then SIGKILL) reaches the processes it started too (``npx`` runs ``node``, ``uvx`` runs
python). Its stderr is the shim's stderr: log lines of any size pass untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from shim.lines import enlarge_pipe


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
        self._exited = threading.Event()
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the target to exit; its exit status, shell-style (128+N for signal N)."""
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the target's whole process group."""
        with self._lock:
            if self._proc.returncode is not None:
                return
            try:
                os.killpg(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, grace: float = 0.5) -> int:
        """The stdio shutdown sequence: our side of stdin is already closed; SIGTERM, then SIGKILL.

        Returns the exit status. Whatever happens, the group is killed before this returns.
        """
        code = self.wait(grace)
        if code is None:
            self.signal(signal.SIGTERM)
            code = self.wait(grace)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait()
        assert code is not None
        # Children that left the group's leader behind still share the group: make sure of them.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return code
