"""The relay: the agent's pipe, the target's pipes and the daemon link, on one event loop.

Shutdown follows the stdio convention: when the agent closes stdin, the target's stdin is closed
(once no call still waits for the daemon's verdict: an allowed one reaches the target, as it would
without the firewall); if the target has not exited after :data:`EXIT_WAIT` seconds it gets
SIGTERM, and SIGKILL :data:`GRACE` seconds later, to its whole process group. SIGTERM/SIGINT to
the shim are passed on at once, then SIGTERM and SIGKILL follow :data:`GRACE` apart. Before the
shim exits, every request still waiting (for the daemon or the target) is answered with an error,
and what is queued for the agent is written out.

A big line from the target is relayed as it arrives when its head shows that the shim need not
see it whole (see :mod:`shim.streaming`); while it is open on the agent's pipe, whatever else is
written to the agent waits for its end (:class:`shim.loop.OutStream`). If the target stops in the
middle of such a line, the line is ended with a newline (the agent cannot parse it, but the next
message stays separate) and its request gets an error like every other one still waiting.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from types import FrameType

from shim.daemon_link import DaemonLink
from shim.firewall import Firewall
from shim.framing import LinePart, LineSplitter, LineTooLong
from shim.leases import Leases
from shim.loop import CHUNK, HIGH_WATER, SMALL_CHUNK, EventLoop, OutStream, Timer
from shim.streaming import Streamed
from shim.target import Target

log = logging.getLogger("mcp-action-firewall")

#: Lines from the agent must be parsed whole before they are judged, so they are bounded.
MAX_CLIENT_LINE = 64 * 1024 * 1024
#: Lines from the target are only relayed; the bound keeps a runaway server from eating memory.
#: It applies to the lines that are assembled: a streamed line is bounded by backpressure instead.
MAX_TARGET_LINE = 256 * 1024 * 1024
#: A line from the target still unfinished after this many bytes may be relayed as it arrives: the
#: size of the first read of a burst. A message that did not fit in it is big, and assembling it
#: costs a copy and the whole line in memory. (A 1 MB answer comes in two reads, 64 KiB and then
#: the rest: with a higher threshold it would be assembled after all.)
STREAM_AFTER = SMALL_CHUNK
#: Blanks after the last byte of a streamed line that are held back with it, at most.
_MAX_HOLD = 1 << 20
#: Seconds a target has to exit once its stdin is closed, before SIGTERM: what MCP clients give a
#: server they run themselves (the Python and TypeScript SDKs wait 2 s), so a server that finishes
#: its last answers on the way out keeps them behind the firewall too.
EXIT_WAIT = 2.0
#: Seconds from a signal to SIGKILL, and for a target's last output once it has exited.
GRACE = 0.5


class Relay:
    """Everything that runs between start and exit."""

    def __init__(
        self,
        loop: EventLoop,
        target: Target,
        link: DaemonLink,
        stdin: int = 0,
        stdout: int = 1,
        *,
        hold: float = 0.0,
    ) -> None:
        self._loop = loop
        self._target = target
        self._link = link
        self._stdin = stdin
        self._client_out = OutStream(loop, stdout, on_drained=self._resume_target)
        self._target_in = OutStream(loop, target.stdin_fd, on_drained=self._resume_client)
        self.leases = Leases(link, self._target_in)
        link.on_ready, link.on_down, link.on_ack = (
            self.leases.connected,
            self.leases.lost,
            self.leases.acknowledged,
        )
        self.firewall = Firewall(
            self._client_out, self._target_in, link, hold=hold, schedule=loop.call_later, leases=self.leases
        )
        self._client_lines = LineSplitter(MAX_CLIENT_LINE)
        self._target_lines = LineSplitter(MAX_TARGET_LINE, stream_after=STREAM_AFTER)
        self._streamed: Streamed | None = None  # the target's line open on the agent's pipe
        self._stream_hold = b""  # its last byte that is not blank, and any blanks after it
        self._client_waits_for_stream = False  # the agent is not read until the streamed line ends
        self._client_open = True
        self._target_open = True
        self._client_want = SMALL_CHUNK  # read sizes: see shim.loop.SMALL_CHUNK
        self._target_want = SMALL_CHUNK
        self._stopping = False
        self._term_due = 0.0
        self._polling = False
        self._finished = False
        self._timers: list[Timer] = []
        self._signals: list[int] = []
        self._code: int | None = None

    def run(self) -> int:
        """Relay until the target is gone; returns its exit status."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handlers = {
            s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        try:
            self._loop.add_reader(wake_r, lambda: self._on_wakeup(wake_r))
            self._loop.add_reader(self._stdin, self._on_client)
            self._loop.add_reader(self._target.stdout_fd, self._on_target)
            self._link.start()
            self._loop.run()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
            self._target.kill_group()  # nothing of the target outlives the shim
        if self._signals:
            log.info("stopped by signal %d", self._signals[0])
        return self._code if self._code is not None else 1

    # -- the agent ---------------------------------------------------------------------------

    def _on_client(self) -> None:
        try:
            chunk = os.read(self._stdin, self._client_want)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._client_eof()
            return
        self._client_want = CHUNK if len(chunk) == self._client_want else SMALL_CHUNK
        for line in self._client_lines.feed(chunk):
            self._client_line(line)
        self.firewall.end_of_input()
        if self._target_in.queued > HIGH_WATER:
            self._loop.remove_reader(self._stdin)  # the target is not reading: stop reading for it
        elif self._client_out.held > HIGH_WATER:
            # The shim's own answers wait behind a streamed line (a server stalled in the middle of
            # one): stop reading what would add to them until it ends.
            self._loop.remove_reader(self._stdin)
            self._client_waits_for_stream = True

    def _client_line(self, line: bytes | LineTooLong | LinePart) -> None:
        if isinstance(line, LineTooLong):
            log.error("dropped a message from the agent: %s (limit %d)", line, MAX_CLIENT_LINE)
            self.firewall.on_client_overlong(line.head, line.size)  # its request gets an error
        elif isinstance(line, bytes):  # never a LinePart: the agent's lines are judged whole
            self.firewall.on_client_line(line)

    def _resume_client(self) -> None:
        if self._client_open:
            self._loop.add_reader(self._stdin, self._on_client)

    def _client_eof(self) -> None:
        for line in self._client_lines.end():
            self._client_line(line)
        self.firewall.end_of_input()  # a leased call on a last line with no newline goes out too
        self._client_open = False
        self._loop.remove_reader(self._stdin)
        log.info("the agent closed stdin")
        # Verdicts come by their own deadlines (a daemon the shim started has longer): this is a
        # backstop only.
        backstop = self._link.start_timeout + self._link.timeout + GRACE
        self._close_target_in(time.monotonic() + backstop)

    def _close_target_in(self, deadline: float) -> None:
        """Close the target's stdin once no call waits for a verdict (or at the verdict deadline)."""
        if self.firewall.judging() and not self._stopping and time.monotonic() < deadline:
            self._loop.call_later(0.01, lambda: self._close_target_in(deadline))
            return
        log.info("stopping the server")
        self._target_in.close()
        self._begin_stop(EXIT_WAIT)

    # -- the target --------------------------------------------------------------------------

    def _on_target(self) -> None:
        try:
            chunk = os.read(self._target.stdout_fd, self._target_want)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._target_eof()
            return
        full = len(chunk) == self._target_want
        lines = self._target_lines
        for line in lines.feed(chunk):
            self._target_line(line)
        head = lines.offer()
        if head is not None:
            self._streamed = self.firewall.may_stream(head)
            if self._streamed is not None:
                self._client_out.begin_stream()
                for part in lines.stream():
                    self._stream_part(part)
        # A streamed line is read in small pieces. Its bytes go straight on to the agent, whose pipe
        # takes 64 KiB at a time (unless it was made bigger): the rest of a bigger read waits in
        # the queue, and blocks of 1 MiB come from fresh pages (glibc maps them, or trims them
        # away once freed), whose page faults cost more than the copying.
        self._target_want = CHUNK if full and self._streamed is None else SMALL_CHUNK
        if self._client_out.queued > HIGH_WATER:
            self._loop.remove_reader(self._target.stdout_fd)  # the agent is not reading: wait for it

    def _target_line(self, line: bytes | LineTooLong | LinePart) -> None:
        if isinstance(line, LinePart):
            if self._streamed is None:
                return  # the rest of a line already ended (see _stream_part)
            self._stream_part(line.data)
            if line.last:
                self._end_stream(line.tail)
        elif isinstance(line, LineTooLong):
            log.error("dropped a message from the server: %s (limit %d)", line, MAX_TARGET_LINE)
            self.firewall.on_target_overlong(line.head, line.tail, line.size)
        else:
            self.firewall.on_target_line(line)

    def _stream_part(self, data: bytes) -> None:
        """Write the next piece of a streamed line, all but its last byte that is not whitespace.

        That byte (the ``}`` that closes the message, once the line is complete) is held back
        until the line ends, so that a line which must not be read as an answer can still be
        left unreadable by every parser, one that reads JSON values off the stream included.
        """
        end = len(data.rstrip(b" \t\r"))
        if end == 0:  # whitespace only: it follows the byte held back
            self._stream_hold += data
            if len(self._stream_hold) > _MAX_HOLD:  # only a hostile line ends in megabytes of blanks
                self._end_stream(b"", refuse=True)
            return
        if self._stream_hold:
            self._client_out.write_part(self._stream_hold)
        if end > 1:
            self._client_out.write_part(data[: end - 1])
        self._stream_hold = data[end - 1 :]

    def _end_stream(self, tail: bytes, *, refuse: bool = False) -> None:
        """The streamed line ends: with its last byte if the firewall says it may be read as it
        came, else without (the agent cannot parse it, and the request it named gets an error)."""
        streamed, self._streamed = self._streamed, None
        if streamed is None:
            return
        hold, self._stream_hold = self._stream_hold, b""
        if not refuse and self.firewall.may_end_stream(streamed):
            self._client_out.write_part(hold)
            self._client_out.end_stream()
            self.firewall.on_target_streamed(streamed, tail)
        else:
            self._client_out.end_stream()
            self.firewall.on_target_poisoned(streamed, tail)
        self._read_agent_again()

    def _cut_stream(self) -> None:
        """The target stopped in the middle of a streamed line: end it (without the byte held
        back), so that what follows is a line of its own. Its request stays in flight, to be
        answered with an error."""
        if self._streamed is not None:
            log.error("the server stopped in the middle of a message; the agent got it cut short")
            self._stream_hold = b""
            self._client_out.end_stream()
            self._streamed = None
            self._read_agent_again()

    def _read_agent_again(self) -> None:
        """A streamed line is over: read the agent again if its answers were held back too long."""
        if self._client_waits_for_stream and self._client_open:
            self._client_waits_for_stream = False
            self._loop.add_reader(self._stdin, self._on_client)

    def _resume_target(self) -> None:
        if self._target_open:
            self._loop.add_reader(self._target.stdout_fd, self._on_target)

    def _target_eof(self) -> None:
        for line in self._target_lines.end():
            self._target_line(line)
        self._cut_stream()
        self._target_open = False
        self._loop.remove_reader(self._target.stdout_fd)
        self.firewall.on_target_exit()
        self._begin_stop()

    # -- signals and the end -----------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _on_wakeup(self, fd: int) -> None:
        try:
            os.read(fd, 4096)
        except BlockingIOError:
            pass
        while self._signals:
            signum = self._signals.pop(0)
            log.info("received signal %d; passing it to the server", signum)
            self._target.signal(signum)
            self._begin_stop(GRACE)
        self._check_done()

    def _begin_stop(self, term_after: float = GRACE) -> None:
        """SIGTERM the target after ``term_after`` seconds and SIGKILL it :data:`GRACE` later; a
        later, hastier reason to stop (a signal after the end of stdin) brings both forward."""
        due = time.monotonic() + term_after
        if not self._stopping or due < self._term_due:
            self._stopping = True
            self._term_due = due
            for timer in self._timers:
                timer.cancel()
            self._timers = [
                self._loop.call_later(term_after, lambda: self._target.signal(signal.SIGTERM)),
                self._loop.call_later(term_after + GRACE, lambda: self._target.signal(signal.SIGKILL)),
            ]
            if not self._polling:
                self._polling = True
                self._poll_exit()
        self._check_done()

    def _poll_exit(self) -> None:
        """SIGCHLD wakes the loop when the target exits; this catches one that came too early."""
        if self._code is None:
            self._check_done()
            self._loop.call_later(0.05, self._poll_exit)

    def _check_done(self) -> None:
        if self._code is None:
            self._code = self._target.poll()
            if self._code is None:
                return
            for timer in self._timers:
                timer.cancel()
            # The server has exited: relay what it wrote before it went (a child may still hold the
            # pipe open, so not for ever), then answer what is still waiting and leave.
            self._loop.call_later(GRACE, self._finish)
        if not self._target_open:
            self._finish()

    def _finish(self) -> None:
        if self._finished:  # the exit timer and a late end of file can both get here
            return
        self._finished = True
        if self._target_open:
            self._target_open = False
            self._loop.remove_reader(self._target.stdout_fd)
            self._cut_stream()
            self.firewall.on_target_exit()
        self._link.close()  # calls waiting for a verdict are answered: refused, nothing ran
        self._loop.remove_reader(self._stdin)
        if self._client_out.queued and not self._client_out.closed:
            self._client_out.close()  # flushes first; the loop keeps running until it has
            self._loop.call_later(1.0, self._loop.stop)
            self._drain_then_stop()
        else:
            self._loop.stop()

    def _drain_then_stop(self) -> None:
        if self._client_out.closed:
            self._loop.stop()
        else:
            self._loop.call_later(0.01, self._drain_then_stop)
