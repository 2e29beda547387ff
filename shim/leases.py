"""The shim's side of leases: allowed calls forwarded at once, each audited before it leaves.

The daemon may push a :class:`~daemon.protocol.LeaseGrant` with an ``allow`` verdict (see
:mod:`daemon.leases` for when it does). While the connection to the daemon is up, a later call to
that tool whose arguments pass :func:`plain_arguments` is forwarded without asking. Before it is
written to the server, its audit record goes to the daemon's socket: the records of the calls read
in one chunk from the agent leave in one :class:`~daemon.protocol.LeaseAudit` frame, then those
calls are written (and anything else bound for the server first flushes them, so the server sees
the agent's order). Records are kept until the daemon acknowledges them, and sent again after a
reconnect; the daemon records each once.

Fail closed: no connection, no lease. Every lease is dropped when the connection is lost, and a
:class:`~daemon.protocol.LeasesRevoked` drops every lease older than its epoch before the next
call is read; the shim then acknowledges it. A lease is not used while frames to the daemon wait
in the shim's memory (the daemon is not reading), nor while :data:`MAX_UNACKED` records wait for
an acknowledgement: those calls are asked about as before.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any, Protocol

import msgpack

from daemon import protocol as p
from shim.confirm import Writer

#: The argument check this shim knows (a lease naming another is ignored).
CHECK = "no-paths/1"
#: Records sent and not yet acknowledged past which no lease is used.
MAX_UNACKED = 8192
#: Leases held at once (one per tool name).
_MAX_LEASES = 4096
#: Bytes of a call's params that go into its audit record (as the daemon records a decision).
HEAD = 1000

#: What a string must not contain for the self-protection rule to ignore it, conservatively: any
#: path separator or home, variable or percent-escape sign, a ``file:`` URI, or a dot that starts
#: a word (``.ssh``, ``..``; self-protection takes a word starting with ``.`` for a path), or the
#: policy file's name (self-protection denies a file of that name anywhere).
_PATHLIKE = re.compile(r"[/\\~$%\x00]|file:|firewall_config|(?:^|[^0-9A-Za-z])\.", re.IGNORECASE)
#: The same test over the serialised params, to skip walking them: no byte that could be any of
#: those features (a dot or a backslash anywhere, any non-ASCII byte) means no string has one.
_PATHLIKE_BYTES = re.compile(rb"[/\\~$%.\x00\x80-\xff]|file:", re.IGNORECASE)
#: Names of characters that look like one of those signs without being folded to it by NFKC.
_LOOKALIKE = ("SOLIDUS", "SLASH", "TILDE", "DOLLAR", "PERCENT", "STOP", "DOT", "PERIOD", "COLON", "WAVE")
_plain_chars: dict[str, bool] = {}

#: One packer for the shim's one thread: ``msgpack.packb`` makes a new one per call.
_PACKER = msgpack.Packer(use_bin_type=True)
#: A LeaseAudit frame's map up to the value of ``rid``: 3 entries, ``t`` first.
_AUDIT_HEAD = b"\x83" + b"".join(map(_PACKER.pack, ("t", "lease_audit", "rid")))
_CALLS = _PACKER.pack("calls")


def audit_frame(rid: int, records: list[list[Any]]) -> bytes:
    """``p.encode(p.LeaseAudit(rid, records))``, built by concatenation: a generic encode (a
    dict of the fields, a new packer) cost about a tenth of the shim's time on a leased call.
    The daemon decodes it like any frame (the map's order does not matter to it)."""
    body: bytes = _AUDIT_HEAD + _PACKER.pack(rid) + _CALLS + _PACKER.pack(records)
    if len(body) > p.MAX_FRAME:
        raise p.FrameTooLarge(f"an audit frame of {len(body)} bytes is over the frame limit")
    return len(body).to_bytes(4, "big") + body


def _plain_char(char: str) -> bool:
    """A non-ASCII character that can pass for none of the path signs."""
    known = _plain_chars.get(char)
    if known is None:
        kind = unicodedata.category(char)
        if kind[0] in "LMN":  # letters, marks, digits: NFKC folds their compatibility forms
            known = True
        elif kind in ("Cf", "Cc", "Co", "Cn", "Cs"):  # invisible, private or unassigned: doubtful
            known = False
        else:
            name = unicodedata.name(char, "")
            known = bool(name) and not any(word in name for word in _LOOKALIKE)
        if len(_plain_chars) < 4096:
            _plain_chars[char] = known
    return known


def plain_text(text: str) -> bool:
    """Whether ``text`` has none of the features that could make self-protection read it as a
    path, as written or after NFKC, nor a character that looks like one of them."""
    if _PATHLIKE.search(text) is not None:
        return False
    if text.isascii():
        return True
    folded = unicodedata.normalize("NFKC", text)
    if folded != text and _PATHLIKE.search(folded) is not None:
        return False
    return all(c.isascii() or _plain_char(c) for c in set(text))


class Lease:
    """One lease: the rule that allows the tool, and the keys a call under it must not hold."""

    __slots__ = ("epoch", "rule", "keys", "_named")

    def __init__(self, grant: p.LeaseGrant) -> None:
        self.epoch = grant.epoch
        self.rule = grant.rule
        self.keys = frozenset(grant.keys)
        # Any of the keys, as JSON text in any case: params without it cannot hold one of them
        # (an escaped spelling has a backslash, which sends the call down the slow path).
        alternatives = b"|".join(re.escape(key.encode()) for key in sorted(self.keys))
        self._named = re.compile(b'"(?:%b)"' % alternatives, re.IGNORECASE) if self.keys else None

    def covers(self, arguments: object, params_json: bytes) -> bool:
        """Whether a call with these arguments (and these serialised params) may go under it:
        every string, keys too, at any depth, is :func:`plain_text`, and no key is one the
        lease names (a non-ASCII key is doubtful: the daemon compares keys after normalizing)."""
        if _PATHLIKE_BYTES.search(params_json) is None and (
            self._named is None or self._named.search(params_json) is None
        ):
            return True  # one scan settles most calls
        keys = self.keys
        stack = [arguments]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                if not plain_text(node):
                    return False
            elif isinstance(node, dict):
                for key, value in node.items():
                    if not isinstance(key, str) or not key.isascii() or not plain_text(key):
                        return False
                    if key.lower() in keys:
                        return False
                    stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)
        return True


def plain_arguments(arguments: object, params_json: bytes, keys: list[str] | None = None) -> bool:
    """:meth:`Lease.covers` for a lease that names ``keys`` (for tests and tools)."""
    grant = p.LeaseGrant("", 0, "", CHECK, keys or [])
    return Lease(grant).covers(arguments, params_json)


class AuditLink(Protocol):
    """What the leases need of :class:`shim.daemon_link.DaemonLink`."""

    @property
    def clear_to_send(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    def new_rid(self) -> int: ...

    def send_now(self, frame: bytes) -> None: ...

    def notify(self, message: p.Message, *, sticky: str | None = None) -> None: ...


class Leases:
    """The leases this shim holds, and the audit records of the calls forwarded under them.

    It is also the Firewall's writer to the server (see the module docstring): calls forwarded
    under a lease wait in it until their records are sent, at the end of the agent's chunk.
    """

    def __init__(self, link: AuditLink, target: Writer) -> None:
        self._link = link
        self._target = target
        self.epoch = 0
        self._held: dict[str, Lease] = {}  # by tool name
        self._seq = 0
        self._records: list[list[Any]] = []  # not sent yet
        # Calls waiting for their records to be sent, each with what to do instead if it cannot be.
        self._lines: list[tuple[bytes, Callable[[], None]]] = []
        self._unacked: dict[int, list[list[Any]]] = {}  # rid -> records sent, in rid order
        self._unacked_count = 0
        #: Calls forwarded under a lease (for tests and the log).
        self.used = 0

    # -- what the daemon says ----------------------------------------------------------------

    def on_push(self, message: p.Message) -> bool:
        """Take a lease message pushed by the daemon; False for any other message."""
        if isinstance(message, p.LeaseGrant):
            if message.check == CHECK and message.epoch >= self.epoch:
                if len(self._held) >= _MAX_LEASES:
                    self._held.clear()
                self._held[message.tool] = Lease(message)
            return True
        if isinstance(message, p.LeasesRevoked):
            if message.epoch > self.epoch:
                self.epoch = message.epoch
                self._held = {t: lease for t, lease in self._held.items() if lease.epoch >= message.epoch}
            self._link.notify(p.LeasesRevokedAck(message.epoch))
            return True
        return False

    def connected(self) -> None:
        """A new connection (a new daemon, maybe): epochs start again; send what waits."""
        self.epoch = 0
        self._held.clear()
        for rid, records in self._unacked.items():
            self._link.send_now(audit_frame(rid, records))

    def lost(self) -> None:
        """The connection is gone: no revocation can reach this shim, so no lease holds."""
        self._held.clear()

    def acknowledged(self, rid: int) -> bool:
        """The daemon has recorded every batch up to ``rid``; False if ``rid`` is none of ours."""
        if rid not in self._unacked:
            return False
        while self._unacked:
            first = next(iter(self._unacked))
            if first > rid:
                break
            self._unacked_count -= len(self._unacked.pop(first))
        return True

    @property
    def unacknowledged(self) -> int:
        """Records sent (or waiting to be) that the daemon has not acknowledged."""
        return self._unacked_count + len(self._records)

    # -- calls -------------------------------------------------------------------------------

    def use(self, tool: str, arguments: object, params_json: bytes) -> bool:
        """Whether the call may go under a lease; if so its audit record is queued, and the
        caller forwards it with :meth:`defer_line`."""
        lease = self._held.get(tool)
        if (
            lease is None
            or self._unacked_count + len(self._records) >= MAX_UNACKED
            or not self._link.clear_to_send
            or not lease.covers(arguments, params_json)
        ):
            return False
        self._seq += 1
        self._records.append([self._seq, tool, lease.rule, params_json[:HEAD]])
        self.used += 1
        return True

    def defer_line(self, line: bytes, instead: Callable[[], None]) -> bool:
        """Write a leased call once its record has been sent (at :meth:`flush`); if the
        connection is lost first, call ``instead`` (which asks the daemon, as without a lease)."""
        self._lines.append((line, instead))
        return True

    def write_line(self, line: bytes) -> bool:
        """Write a line to the server, after the leased calls before it."""
        if self._lines or self._records:
            self.flush()
        return self._target.write_line(line)

    def flush(self) -> None:
        """Send the queued records in one frame, then write the calls they cover."""
        if self._records:
            records, self._records = self._records, []
            rid = self._link.new_rid()
            self._link.send_now(audit_frame(rid, records))
            if not self._link.connected:  # lost (the daemon died): the records never left
                lines, self._lines = self._lines, []
                for _, instead in lines:
                    instead()
                return
            self._unacked[rid] = records
            self._unacked_count += len(records)
        if self._lines:
            lines, self._lines = self._lines, []
            for line, _ in lines:
                self._target.write_line(line)
