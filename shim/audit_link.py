"""The daemon link's audit channel: the second connection, which carries the audit records of
leased calls (see :mod:`shim.leases`)."""

from __future__ import annotations

import logging
import socket

from daemon import protocol as p
from shim.request_table import _READY, RequestTable

log = logging.getLogger("mcp-action-firewall")


class AuditChannel(RequestTable):
    """Sends the audit records of leased calls on their own connection to the daemon."""

    @property
    def clear_to_send(self) -> bool:
        """Connected, and nothing waits to be written to the audit channel: a record sent now
        reaches the kernel now."""
        return self._state == _READY and self._audit is not None and not self._audit_out

    def send_now(self, frame: bytes) -> None:
        """Send an encoded frame of audit records on the audit channel, if connected (else it is
        the caller's to keep: it sends it again once :attr:`on_ready` says the link is back)."""
        sock = self._audit
        if self._state != _READY or sock is None:
            return
        if not self._audit_out:
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(f"the audit connection to the firewall daemon was lost ({exc.strerror or exc})")
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self._loop.add_writer(sock.fileno(), self._flush_audit)
        self._audit_out += frame

    def _flush_audit(self) -> None:
        sock = self._audit
        if sock is None:
            return
        try:
            sent = sock.send(self._audit_out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"the audit connection to the firewall daemon was lost ({exc.strerror or exc})")
            return
        del self._audit_out[:sent]
        if not self._audit_out:
            self._loop.remove_writer(sock.fileno())

    def _open_audit(self) -> None:
        """Open the audit channel (a Unix socket connects at once, or fails at once)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self._path)
            sock.send(p.encode(p.Hello(role=p.ROLE_AUDIT, resume=self._token)))
        except OSError as exc:
            sock.close()
            log.warning("no audit connection to firewalld (%s): every call is asked about", exc)
            return
        self._audit = sock
        self._audit_out.clear()
        self._loop.add_reader(sock.fileno(), self._audit_readable)

    def _audit_readable(self) -> None:
        """The daemon sends nothing on the audit channel: anything readable is its end."""
        sock = self._audit
        if sock is None:
            return
        try:
            data = sock.recv(1 << 12)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("the audit connection to the firewall daemon was lost")
