"""The shim's side of tool pinning: each tools/list page is checked by firewalld before the agent
sees it, and the tools whose definition is quarantined are left out (see ``daemon/pins.py``).

A page waits for firewalld's answer (a page, not a call: the cost is one round trip per listing).
If firewalld is away or does not answer in time, the page passes as the server sent it: nothing
can be called meanwhile (calls fail closed), and the page's definitions are kept and sent again
as soon as firewalld is back, before any call is judged; if it then hides a tool, the agent is
told that the tool list changed, so it lists again and no longer sees it. A page too big to be
kept (over 4 MiB of definitions) or sent (over 8 MiB) that cannot be checked is shown without
its tools: fail closed.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from daemon import protocol as p
from shim import jsonrpc as rpc
from shim.confirm import Link, Writer
from shim.jsonrpc import JsonId
from shim.listing import finish_tools_page, parse_tools_page, tool_definitions

log = logging.getLogger("mcp-action-firewall")

#: Bytes of definitions kept to send again after a reconnect. A page past it that firewalld does
#: not answer is shown without its tools (it could not be checked later).
_MAX_KEPT = 4 * 1024 * 1024
#: Bytes of definitions in one page that are sent to be checked, at most: firewalld compares a page
#: on its event loop, which must not stall its other sessions for long. A bigger page (real servers
#: list well under 1 MiB) is shown without its tools.
_MAX_SENT = 8 * 1024 * 1024
#: Bytes of the server's lines held behind pages waiting for firewalld, at most.
_MAX_BEHIND = 1 << 20
_SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"


class Pinning:
    """Mixed into :class:`shim.firewall.Firewall`."""

    _client: Writer
    _link: Link
    _inflight: dict[JsonId, str]

    def _init_pinning(self) -> None:
        self._pages_waiting: set[JsonId] = set()  # tools/list answers waiting for firewalld
        self._kept_pages = 0  # pages of the last listing kept to send after a reconnect
        self._kept_bytes = 0
        self._hidden_shown: set[str] = set()  # names left out of the agent's current listing
        # While a page waits for firewalld, the server's later lines wait behind it, so the agent
        # gets them in the server's order: entries are [line], or [None] for a page not yet back.
        self._behind: deque[list[bytes | None]] = deque()
        self._behind_bytes = 0

    def _tools_page(self, msg_id: JsonId, line: bytes, first_page: bool) -> bytes | None:
        """The page to write now, or None when it is written once firewalld has answered."""
        page = parse_tools_page(line)
        if page is None:
            return line
        msg, tools = page
        definitions = tool_definitions(tools)
        if not definitions:
            return finish_tools_page(msg, tools, first_page, ())
        everything = [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if sum(len(d) for d in definitions) > _MAX_SENT:  # cannot be checked: nothing of it is shown
            log.error("a tools/list page of over %d bytes of definitions: its tools are hidden", _MAX_SENT)
            return finish_tools_page(msg, tools, first_page, set(everything))
        more = msg["result"].get("nextCursor") is not None  # "" is a cursor too
        kept = self._keep(definitions, first_page, more)
        if not getattr(self._link, "ready", True):
            return finish_tools_page(msg, tools, first_page, () if kept else set(everything))
        self._pages_waiting.add(msg_id)
        slot: list[bytes | None] = [None]
        self._behind.append(slot)

        def answered(reply: p.Message | None, why: str) -> None:
            self._pages_waiting.discard(msg_id)
            hidden: list[str] = []
            if isinstance(reply, p.ToolsHidden):
                hidden = reply.hidden
            else:  # checked when firewalld is back (if kept); calls fail closed until then
                log.warning("tools/list passed unchecked: %s", why or "firewalld refused the check")
                hidden = [] if kept else everything
            if first_page:
                self._hidden_shown = set(hidden)
            else:
                self._hidden_shown.update(hidden)
            slot[0] = finish_tools_page(msg, tools, first_page, set(hidden))
            self._flush_behind()

        self._link.request(lambda rid: p.ToolDefinitions(rid, definitions, first_page, more), answered)
        return None

    def _relay_in_order(self, line: bytes) -> None:
        """Write a line from the server, after the pages still waiting for firewalld (if they
        hold back less than :data:`_MAX_BEHIND`; past it, order gives way to memory)."""
        if self._behind and self._behind_bytes + len(line) <= _MAX_BEHIND:
            self._behind.append([line])
            self._behind_bytes += len(line)
        elif not self._client.write_line(line):
            log.debug("the agent has gone; dropping a line from the target")

    def _flush_behind(self) -> None:
        while self._behind and self._behind[0][0] is not None:
            line = self._behind.popleft()[0]
            assert line is not None
            self._client.write_line(line)
        if not self._behind:
            self._behind_bytes = 0

    def _keep(self, definitions: list[bytes], first_page: bool, more: bool) -> bool:
        """Keep the listing's pages to send firewalld again after a reconnect (or restart);
        False if this page is not kept (too big)."""
        stick = getattr(self._link, "stick", None)
        if stick is None:
            return True
        if first_page:
            for index in range(self._kept_pages):
                stick(f"pins:{index}", None)
            self._kept_pages = self._kept_bytes = 0
        size = sum(len(d) for d in definitions)
        if self._kept_bytes + size > _MAX_KEPT:
            return False
        self._kept_bytes += size
        first = first_page and not self._kept_pages
        stick(f"pins:{self._kept_pages}", p.ToolDefinitions(0, definitions, first, more))
        self._kept_pages += 1
        return True

    def _pins_message(self, message: p.Message) -> bool:
        """Handle what firewalld says of pins unasked; False if ``message`` is something else."""
        if isinstance(message, p.PinsChanged):
            self._tell_list_changed()
            return True
        if isinstance(message, p.ToolsHidden):  # a late answer, or one to a listing sent again
            if set(message.hidden) - self._hidden_shown:
                self._tell_list_changed()
            return True
        return False

    def _tell_list_changed(self) -> None:
        """Tell the agent to list the tools again: on each of its open subscriptions (2026-07-28),
        else as a plain notification."""
        listens = [i for i, method in self._inflight.items() if method == "subscriptions/listen"]
        notes: list[dict[str, Any]] = [
            {
                "jsonrpc": "2.0",
                "method": "notifications/tools/list_changed",
                "params": {"_meta": {_SUBSCRIPTION: i}},
            }
            for i in listens
        ] or [{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}]
        for note in notes:
            self._client.write_line(rpc.dumps_reply(note))
