"""The benchmark's MCP client: a spawned process and newline-delimited JSON-RPC, stdlib only.

Not the official SDK: its own cost per message (pydantic models, anyio streams) is several times
what is being measured. This client writes pre-built lines with ``os.write`` and splits responses
on ``\\n`` in a ``bytearray``; its cost is the same for every variant.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

CHUNK = 1 << 20


class PeerError(Exception):
    """The process under test closed its stdout, or did not answer in time."""


def call_line(msg_id: int, tool: str, arguments: dict[str, object]) -> bytes:
    """A ``tools/call`` request line (without its newline)."""
    params = {"name": tool, "arguments": arguments}
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%b}' % (
        msg_id,
        json.dumps(params, separators=(",", ":")).encode(),
    )


def initialize_line(msg_id: int = 0) -> bytes:
    """An ``initialize`` request line, as a 2025-06-18 client sends it."""
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "mcp-firewall-bench", "version": "1.0"},
    }
    return b'{"jsonrpc":"2.0","id":%d,"method":"initialize","params":%b}' % (
        msg_id,
        json.dumps(params, separators=(",", ":")).encode(),
    )


INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


class Peer:
    """One spawned variant with its stdin and stdout as raw pipes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, stderr_path: Path) -> None:
        with open(stderr_path, "ab") as err:
            self.spawned_ns = time.perf_counter_ns()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                bufsize=0,
                env=env,
                cwd=cwd,
                start_new_session=True,  # as MCP clients do; lets us kill the whole group
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN)
        self._buf = bytearray()
        self._scan = 0

    @property
    def pid(self) -> int:
        """The variant's process id (the shim, the relay, the seed or the target itself)."""
        return self.proc.pid

    def send(self, data: bytes) -> None:
        """Write bytes (one or more whole lines, newlines included)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view) :]

    def recv(self, timeout: float = 10.0) -> bytes:
        """The next line, without its newline.

        Raises:
            PeerError: end of file, or no whole line within ``timeout`` seconds.
        """
        deadline = 0.0
        while True:
            nl = self._buf.find(b"\n", self._scan)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._scan = 0
                return line
            self._scan = len(self._buf)
            if not self._poll.poll(0):
                deadline = deadline or time.monotonic() + timeout
                left = deadline - time.monotonic()
                if left <= 0 or not self._poll.poll(left * 1000):
                    raise PeerError(f"no answer within {timeout:g} s")
            chunk = os.read(self._out, CHUNK)
            if not chunk:
                raise PeerError("the process closed its stdout")
            self._buf += chunk

    def recv_batch(self, timeout: float = 10.0) -> bytes:
        """Wait for at least one line; return every whole line received so far, joined by newlines."""
        first = self.recv(timeout)
        end = self._buf.rfind(b"\n")
        if end < 0:
            return first
        block = first + b"\n" + bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scan = 0
        return block

    def initialize(self, timeout: float = 30.0) -> bytes:
        """Send ``initialize`` and return its response (the ``initialized`` notice follows it)."""
        self.send(initialize_line() + b"\n")
        line = self.recv(timeout)
        self.send(INITIALIZED + b"\n")
        return line

    def peak_rss_kib(self) -> int | None:
        """The process's peak resident set size so far (``VmHWM``), in KiB."""
        return peak_rss_kib(self.proc.pid)

    def close_stdin(self, timeout: float = 10.0) -> float | None:
        """Close stdin and wait for the process to exit; seconds taken, or None if it had to be killed."""
        start = time.perf_counter()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if not wait_exit(self.proc, timeout):
            self.kill()
            return None
        elapsed = time.perf_counter() - start
        self.kill()  # anything the variant left behind in its group
        return elapsed

    def kill(self) -> None:
        """Kill the process group (idempotent) and reap."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``proc`` to exit; False on timeout.

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms, too coarse to time an exit, so on
    Linux this sleeps on a pidfd, which becomes readable the moment the process exits.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return False
    finally:
        os.close(pidfd)
    proc.wait()
    return True


def peak_rss_kib(pid: int) -> int | None:
    """``VmHWM`` of a live process, in KiB (Linux); None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
