"""Approve or deny a whole group of actions (one chat's flood) after one confirmation.

A base class of :class:`console.app.FirewallConsole`: ``a`` and ``d`` on a group row of the
pending list (see :mod:`console.flood`) land here.
"""

from __future__ import annotations

from textual import work
from textual.app import App

from console.client import ConsoleError
from console.confirm import ConfirmScreen
from console.connection import Backend
from console.flood import Group
from console.messages import DenyFinished
from console.model import visible


class FloodActions(App[None]):
    """Whole-group approve and deny, for the console app."""

    backend: Backend

    @work(exclusive=True, group="ask")
    async def settle_group(self, verb: str, group: Group) -> None:
        """Ask once, then approve (``verb`` "approve") or deny every action of the group."""
        count = len(group.actions)
        chat = visible(group.actions[0].client) or f"session {visible(group.session_id)}"
        if verb == "approve":
            held = sum(1 for a in group.actions if a.held_until > 0)
            question = f"Approve all {count} actions of {chat}?"
            detail = (
                f"{held} of them are held open by their chat and run at once; the others stay paused "
                "(their codes still work). Look at the list first: Enter shows every action."
            )
        else:
            question = f"Deny all {count} actions of {chat}?"
            detail = "The agent will be told they were denied; their codes stop working."
        yes = "Approve all" if verb == "approve" else "Deny all"
        if await self.push_screen_wait(ConfirmScreen(question, detail, yes=yes)):
            self._settle(verb, group.session_id, tuple(a.action_id for a in group.actions))

    @work(thread=True, group="deny", name="settle group")
    def _settle(self, verb: str, session_id: str, action_ids: tuple[str, ...]) -> None:
        call = self.backend.approve if verb == "approve" else self.backend.deny
        done, failed = 0, []
        for action_id in action_ids:
            try:
                call(action_id)
                done += 1
            except (ConsoleError, OSError) as exc:
                failed.append(f"{action_id}: {exc}")
            except Exception as exc:  # reported on screen, never as a traceback
                failed.append(f"{action_id}: unexpected error: {exc!r}")
        past = "approved" if verb == "approve" else "denied"
        summary = f"{done} of {len(action_ids)} actions of {session_id} {past}"
        if failed:
            summary += f"; {len(failed)} not: " + "; ".join(failed[:3]) + ("…" if len(failed) > 3 else "")
        self.post_message(DenyFinished(session_id, not failed, summary, verb))
