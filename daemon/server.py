"""firewalld's socket: who may connect, and what each kind of peer may ask.

:class:`Firewalld` accepts connections and runs the daemon's tasks. What it holds and does is
split by subject: :mod:`daemon.state` (the shared state, and how changes reach shims and
consoles), :mod:`daemon.connections` (each connection, from its hello to its close),
:mod:`daemon.shim_requests` and :mod:`daemon.console_requests` (what each kind of peer may ask),
:mod:`daemon.audit_channel` (the audit records of leased calls) and :mod:`daemon.housekeeping`
(the periodic tasks).
"""

from __future__ import annotations

import errno
import logging

import anyio
from anyio.abc import SocketListener, TaskStatus

from daemon.connections import Connections
from daemon.housekeeping import Housekeeping

log = logging.getLogger("firewalld")

#: What accept() can raise that passes once connections close (out of descriptors or memory,
#: or a peer that left the backlog): wait and accept again, serving the open connections meanwhile.
_ACCEPT_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED})


class Firewalld(Connections, Housekeeping):
    """The daemon's state and its connection handlers."""

    async def serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections and run housekeeping until cancelled (or the listener is closed)."""
        async with self._events_in, self._events_out, anyio.create_task_group() as tg:
            tg.start_soon(self._housekeeping, name="housekeeping")
            tg.start_soon(self._broadcaster, name="broadcaster")
            tg.start_soon(self._ingester, name="ingester")
            tg.start_soon(self._pin_pusher, name="pin pusher")
            tg.start_soon(self._acker, name="lease audit acks")
            task_status.started()
            async with listener:
                backoff = 0.0
                while True:
                    try:
                        stream = await listener.accept()
                    except anyio.ClosedResourceError:
                        return  # closed for a stop: the caller cancels the rest
                    except anyio.BrokenResourceError as exc:
                        cause = exc.__cause__
                        if not isinstance(cause, OSError) or cause.errno not in _ACCEPT_TRANSIENT:
                            raise
                        if not backoff:
                            log.error(
                                "cannot accept connections (%s); retrying while serving the open ones", cause
                            )
                        backoff = min(max(backoff * 2, 0.05), 1.0)
                        await anyio.sleep(backoff)
                        continue
                    if backoff:
                        backoff = 0.0
                        log.info("accepting connections again")
                    tg.start_soon(self._connection, stream, name="connection")
