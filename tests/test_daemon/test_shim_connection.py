"""A shim's connection to a real firewalld: answered in order, nothing lost, never stuck on one peer."""

from __future__ import annotations

import os
import socket
import time

from conftest import Daemon
from daemon import protocol as p

PARAMS = b'{"name":"read_note","arguments":{"name":"a"}}'


def shim_socket(daemon: Daemon) -> socket.socket:
    """A connection that has said hello as a shim and been welcomed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.socket)
    sock.sendall(p.encode(p.Hello(role=p.ROLE_SHIM, target=["t"], cwd="/", pid=os.getpid())))
    welcome = read_messages(sock, p.FrameDecoder(), 1)
    assert isinstance(welcome[0], p.Welcome)
    return sock


def read_messages(sock: socket.socket, decoder: p.FrameDecoder, count: int) -> list[p.Message]:
    out: list[p.Message] = []
    while len(out) < count:
        data = sock.recv(1 << 16)
        assert data, f"firewalld closed the connection after {len(out)} of {count} answers"
        out += decoder.feed(data)
    return out


def console_answers(daemon: Daemon) -> p.Message:
    """One ListPending over a fresh console connection (fails the test if the daemon is stuck)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(p.encode(p.Hello(role=p.ROLE_CONSOLE)) + p.encode(p.ListPending(1)))
        return read_messages(sock, p.FrameDecoder(), 2)[1]


def test_pipelined_decisions_are_answered_in_order(daemon: Daemon) -> None:
    """Frames sent back to back, split anywhere, each get their verdict, in order."""
    sock = shim_socket(daemon)
    stream = b"".join(p.encode(p.Decide(rid, PARAMS)) for rid in range(1, 501))
    for start in range(0, len(stream), 997):  # frames cut across sends
        sock.sendall(stream[start : start + 997])
    answers = read_messages(sock, p.FrameDecoder(), 500)
    assert [a.rid for a in answers if isinstance(a, p.Verdict)] == list(range(1, 501))
    sock.close()


def test_a_shim_that_does_not_read_neither_loses_answers_nor_stalls_the_daemon(daemon: Daemon) -> None:
    """A peer that stops reading is stopped being read, while others are served; nothing is lost."""
    sock = shim_socket(daemon)
    sock.setblocking(False)
    frame = p.encode(p.Decide(0, PARAMS))
    sent = 0
    stalled_at = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sock.send(p.encode(p.Decide(sent + 1, PARAMS)))
            sent += 1
        except BlockingIOError:
            # Both directions' buffers are full: the daemon has stopped reading this peer. Make
            # sure it stays stopped (no busy loop that reads and drops) before going on.
            if stalled_at is None:
                stalled_at = time.monotonic()
            elif time.monotonic() - stalled_at > 0.5:
                break
            time.sleep(0.01)
    assert stalled_at is not None, f"sent {sent} frames of {len(frame)} bytes without the daemon pushing back"
    assert isinstance(console_answers(daemon), p.PendingList)  # others are still served
    sock.setblocking(True)
    answers = read_messages(sock, p.FrameDecoder(), sent)
    assert [a.rid for a in answers] == list(range(1, sent + 1))
    assert all(isinstance(a, p.Verdict) and a.action == p.ALLOW for a in answers)
    sock.close()


def test_a_broken_frame_costs_its_connection_only(daemon: Daemon) -> None:
    """Garbage after the handshake drops that connection; the daemon goes on serving."""
    sock = shim_socket(daemon)
    sock.sendall(b"\x00\x00\x00\x05nope!")
    assert sock.recv(1 << 16) == b""  # closed by the daemon
    assert isinstance(console_answers(daemon), p.PendingList)
    other = shim_socket(daemon)
    other.sendall(p.encode(p.Decide(7, PARAMS)))
    verdict = read_messages(other, p.FrameDecoder(), 1)[0]
    assert isinstance(verdict, p.Verdict) and verdict.rid == 7
    other.close()
    sock.close()


def test_a_shim_can_neither_stop_the_daemon_nor_read_its_status(daemon: Daemon) -> None:
    """StopDaemon and StatusQuery are console requests: from a shim they are refused, and the
    daemon keeps running (an agent's bytes reach the daemon only through a shim)."""
    sock = shim_socket(daemon)
    with sock:
        sock.sendall(p.encode(p.StopDaemon(7)) + p.encode(p.StatusQuery(8)))
        answers = read_messages(sock, p.FrameDecoder(), 2)
    assert [(type(a), a.rid) for a in answers] == [(p.Error, 7), (p.Error, 8)]
    assert all(isinstance(a, p.Error) and a.code == p.E_FORBIDDEN for a in answers)
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert isinstance(console_answers(daemon), p.PendingList)
