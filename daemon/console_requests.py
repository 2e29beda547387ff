"""What a console may ask of firewalld, and how each request is answered.

A console may list pending actions with their codes, approve or deny them, make and revoke grants,
review tool definitions, read the audit log and ask about the daemon itself.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from daemon import protocol as p
from daemon import status
from daemon.arguments import ARGUMENTS_PIECE, ArgumentsView, shown_arguments
from daemon.peer import Peer
from daemon.pins import PinError
from daemon.state import DaemonState

log = logging.getLogger("firewalld")
T = TypeVar("T")


class ConsoleRequests(DaemonState):
    """The handlers of a console's requests."""

    async def _console_request(self, peer: Peer, msg: p.Message) -> None:
        match msg:
            case p.ListPending():
                expired = self.pending.expire()
                listing = p.PendingList(
                    msg.rid,
                    status.session_views(self),
                    await self.pending_views(),
                    self.store.paused_bytes(),
                    self.settings.max_paused_bytes,
                )
                await peer.send(listing)
                if expired:  # other consoles still show them
                    await self.broadcast(p.Event("pending", "expired"))
            case p.DenyAction():
                row = self.pending.deny(msg.action_id)
                if row is None:
                    await peer.send(p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}"))
                else:
                    await peer.send(p.Ack(msg.rid, f"denied {row.action_id} ({row.tool})"))
                    await self.broadcast(p.Event("pending", row.action_id))
            case p.ApproveAction():
                await peer.send(await self._approve(msg))
            case p.MakeGrant():
                await peer.send(await self._desk.make(msg))
            case p.PreviewRule():
                await peer.send(self._desk.preview(msg))
            case p.ListGrants():
                await peer.send(self._desk.listing(msg))
            case p.RevokeGrant():
                await peer.send(self._desk.revoke(msg))
            case p.QueryLog():
                rows = self.store.query_audit(msg.limit, msg.session_id, msg.server, msg.tool)
                await peer.send(p.LogRows(msg.rid, rows))
            case p.ShowArguments():
                await peer.send(await self._arguments_piece(msg))
            case p.ListPins():
                await peer.send(p.PinList(msg.rid, self.pins.views(msg.server)))
            case p.ReviewTool():
                try:
                    with self.store.transaction():
                        pin = self.pins.review(msg.review_id, msg.accept)
                except PinError as exc:
                    await peer.send(p.Error(msg.rid, p.E_NOT_FOUND, str(exc)))
                else:
                    verb = (
                        "accepted: pinned and shown again"
                        if msg.accept
                        else "rejected: stays hidden and denied"
                    )
                    await peer.send(p.Ack(msg.rid, f"{msg.review_id} ({pin.tool} on {pin.server}) {verb}"))
            case p.Subscribe():
                self._consoles.add(peer)
                await peer.send(p.Ack(msg.rid, "subscribed"))
            case p.StatusQuery():
                await peer.send(status.report(self, msg.rid, self.started))
            case p.StopDaemon():
                log.info("stopping: asked by a console (firewalld stop)")
                await peer.send(p.Ack(msg.rid, f"firewalld (pid {os.getpid()}) is stopping"))
                os.kill(os.getpid(), signal.SIGTERM)  # the one way to stop: as on SIGTERM
            case _:
                await peer.send(
                    p.Error(getattr(msg, "rid", 0), p.E_FORBIDDEN, f"a console may not send {p.tag_of(msg)}")
                )

    async def pending_views(self) -> list[dict[str, Any]]:
        """Open actions, newest first, with their codes (consoles only; expire first).

        Arguments over :data:`ARGUMENTS_LISTED` bytes are cut to a preview, with their full size
        and hash: however big the paused calls, a listing stays far under the frame limit, and
        :class:`~daemon.protocol.ShowArguments` fetches the rest.
        """
        rows = self.store.open_pending()
        known = {row.action_id for row in rows}
        for gone in [a for a in self._argument_views if a not in known]:
            del self._argument_views[gone]
        if self._full is not None and self._full[0] not in known:
            self._full = None
        views = []
        for row in rows:
            shown = self._argument_views.get(row.action_id)
            if shown is None:
                shown = await self._run(ArgumentsView.of, row.params)
                self._argument_views[row.action_id] = shown
            session = self.sessions.get(row.session_id)
            views.append(
                {
                    "action_id": row.action_id,
                    "session_id": row.session_id,
                    "server": row.server,
                    "client": session.client if session else "",
                    "target": session.target if session else [],
                    "cwd": session.cwd if session else "",
                    "tool": row.tool,
                    # JSON text, not a map: JSON numbers can exceed what msgpack can carry.
                    # When cut: the start of that text, no longer JSON.
                    "arguments_json": shown.listed,
                    "arguments_cut": shown.cut,
                    "arguments_bytes": shown.size,
                    "arguments_sha256": shown.sha256,
                    "rule": row.rule,
                    "reason": row.reason,
                    "created": row.created,
                    "deadline": row.deadline,
                    "attempts_left": row.attempts_left,
                    "code": self.pending.code_of(row),
                    "held_until": self._held.get(row.action_id, 0.0),
                }
            )
        return views

    async def _arguments_piece(self, msg: p.ShowArguments) -> p.Message:
        """One piece of an open action's full arguments, or why not."""
        row = self.store.get_pending(msg.action_id)
        if row is None or row.status != "pending":
            return p.Error(msg.rid, p.E_NOT_FOUND, f"no pending action {msg.action_id}")
        if self._full is None or self._full[0] != row.action_id:
            self._full = None  # let the last one go before making the next
            self._full = (row.action_id, await self._run(shown_arguments, row.params))
        data = self._full[1]
        if not 0 <= msg.offset <= len(data):
            return p.Error(msg.rid, p.E_BAD_REQUEST, f"offset {msg.offset} is outside 0..{len(data)}")
        view = self._argument_views.get(row.action_id)
        if view is None:
            view = self._argument_views[row.action_id] = await self._run(ArgumentsView.of, row.params, data)
        piece = data[msg.offset : msg.offset + ARGUMENTS_PIECE]
        return p.ArgumentsPiece(msg.rid, row.action_id, msg.offset, len(data), view.sha256, piece)

    @staticmethod
    async def _run(func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on a thread when its input is big: parsing and hashing tens of MB of
        arguments must not hold up other sessions' decisions."""
        if sum(len(a) for a in args if isinstance(a, bytes)) < _INLINE:
            return func(*args)
        return await anyio.to_thread.run_sync(func, *args)


#: Params smaller than this are handled on the event loop (a thread hop costs more).
_INLINE = 256 * 1024
