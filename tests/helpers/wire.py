"""A raw JSON-RPC peer over stdio, for tests that must see (or send) exact bytes.

``Peer`` spawns a command (the shim, or a server directly) with pipes, reads its stdout on a
thread into a queue, and lets a test send any bytes and wait for the messages it expects. Every
wait has a deadline (a hang fails the test instead of stalling the run); nothing sleeps.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Long enough for a slow CI machine to start node or the SDK; short enough to fail a hang.
DEADLINE = 30.0

Message = dict[str, Any]


def jline(obj: object) -> bytes:
    """Compact JSON, non-ASCII as sent, as an MCP client writes a message (no newline)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def call(msg_id: int | str, name: str, arguments: dict[str, Any] | None = None, **params: Any) -> Message:
    """A tools/call request."""
    body: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": body}


def request(msg_id: int | str, method: str, params: dict[str, Any] | None = None) -> Message:
    """A JSON-RPC request."""
    msg: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    """A JSON-RPC notification."""
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def initialize(msg_id: int | str = 0, version: str = "2025-11-25", **capabilities: Any) -> Message:
    """An initialize request for ``version``, with the given client capabilities."""
    params = {
        "protocolVersion": version,
        "capabilities": capabilities,
        "clientInfo": {"name": "wire", "version": "1"},
    }
    return request(msg_id, "initialize", params)


def reap(proc: subprocess.Popen[bytes], reader: threading.Thread) -> None:
    """Kill ``proc`` if it still runs, wait for it and its reader thread, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=DEADLINE)
    reader.join(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class Peer:
    """The agent's end of a stdio MCP connection, byte-exact."""

    def __init__(self, command: list[str], env: dict[str, str], stderr: Path | None = None) -> None:
        self._stderr = open(stderr, "ab") if stderr is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )
        self.raw: list[bytes] = []  # every line received, in order
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="peer-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def send(self, message: Message | bytes) -> None:
        """Write one message (or exact bytes, to which a newline is added) to the peer's stdin."""
        data = message if isinstance(message, bytes) else jline(message)
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def recv_line(self, deadline: float = DEADLINE) -> bytes:
        """The next raw line (with its newline). Raises EOFError at end of output."""
        try:
            line = self._lines.get(timeout=deadline)
        except queue.Empty:
            raise TimeoutError(f"nothing from the peer in {deadline} s") from None
        if line is None:
            self._lines.put(None)
            raise EOFError("the peer closed its stdout")
        return line

    def recv(self, deadline: float = DEADLINE) -> Message:
        """The next message, parsed."""
        msg: Message = json.loads(self.recv_line(deadline))
        return msg

    def recv_until(
        self, done: Callable[[Message], bool], deadline: float = DEADLINE
    ) -> tuple[Message, list[Message]]:
        """Read until a message satisfies ``done``; returns it and the messages before it."""
        others: list[Message] = []
        while True:
            msg = self.recv(deadline)
            if done(msg):
                return msg, others
            others.append(msg)

    def response(self, msg_id: int | str, deadline: float = DEADLINE) -> tuple[Message, list[Message]]:
        """Read until the response to ``msg_id`` (not a request of the server's with that id)."""
        return self.recv_until(lambda m: m.get("id") == msg_id and "method" not in m, deadline)

    def ask(self, message: Message, deadline: float = DEADLINE) -> Message:
        """Send a request and return its response (other messages in between are dropped)."""
        self.send(message)
        return self.response(message["id"], deadline)[0]

    def close(self, deadline: float = DEADLINE) -> int:
        """Close stdin (the client going away) and wait for the exit status."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=deadline)
        finally:
            self.kill()

    def kill(self) -> None:
        """Make sure the peer is gone, and release its pipes."""
        reap(self.proc, self._reader)
        if not isinstance(self._stderr, int):
            self._stderr.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
