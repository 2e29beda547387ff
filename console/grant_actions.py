"""The console's grant keys: ``g`` approves the selected action with a scope, ``x`` revokes the
selected grant, and the grants tab is kept current.

A base class of :class:`console.app.FirewallConsole`, kept apart so that the app module stays
short. Questions are modal screens awaited in async workers; every daemon request runs in a
thread worker and reports back with a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual import work
from textual.app import App

from console.client import ConsoleError
from console.confirm import ConfirmScreen
from console.connection import Backend
from console.grant_screen import GrantChoice, GrantScreen
from console.grants_view import GrantsPane
from console.messages import DenyFinished, GrantsLoaded
from console.model import Action, visible


class GrantActions(App[None]):
    """Grant and revoke, for the console app."""

    backend: Backend
    clock: Callable[[], float]

    def _selected_action(self) -> Action | None:
        raise NotImplementedError  # the app knows its list

    # -- workers --------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="grants", name="grants")
    def _load_grants(self) -> None:
        try:
            self.post_message(GrantsLoaded(self.backend.grants()))
        except (ConsoleError, OSError) as exc:
            self.post_message(GrantsLoaded((), False, str(exc)))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(GrantsLoaded((), False, f"unexpected error: {exc!r}"))

    @work(thread=True, group="deny", name="grant")
    def _grant(self, action_id: str, choice: GrantChoice, base_sha256: str) -> None:
        try:
            message = self.backend.grant(action_id, choice, base_sha256)
            self.post_message(DenyFinished(action_id, True, message, "grant"))
        except (ConsoleError, OSError) as exc:
            self.post_message(DenyFinished(action_id, False, str(exc), "grant"))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(DenyFinished(action_id, False, f"unexpected error: {exc!r}", "grant"))
        self._load_grants()

    @work(thread=True, group="deny", name="revoke")
    def _revoke(self, grant_id: str) -> None:
        try:
            self.post_message(DenyFinished(grant_id, True, self.backend.revoke(grant_id), "revoke"))
        except (ConsoleError, OSError) as exc:
            self.post_message(DenyFinished(grant_id, False, str(exc), "revoke"))
        except Exception as exc:  # reported on screen, never as a traceback
            self.post_message(DenyFinished(grant_id, False, f"unexpected error: {exc!r}", "revoke"))
        self._load_grants()

    # -- keys -----------------------------------------------------------------------------------

    @work(exclusive=True, group="ask")
    async def action_grant(self) -> None:
        """Ask how far to approve the selected action, show an "always" rule's diff, then do it."""
        action = self._selected_action()
        if action is None:
            self.notify("No action is selected.", severity="warning")
            return
        choice = await self.push_screen_wait(GrantScreen(action))
        if choice is None:
            return
        base = ""
        if choice.scope == "always":
            try:
                path, diff, base = await asyncio.to_thread(
                    self.backend.preview_rule, action.action_id, choice.matches
                )
            except (ConsoleError, OSError) as exc:
                self.notify(visible(str(exc)), title="Cannot write a rule", severity="error", markup=False)
                return
            question = f"Add this rule to {path}?"
            shown = visible(diff, keep="\n")
            if not await self.push_screen_wait(ConfirmScreen(question, shown, yes="Write the rule")):
                return
        self._grant(action.action_id, choice, base)

    @work(exclusive=True, group="ask")
    async def action_revoke(self) -> None:
        """Revoke the selected grant, after asking."""
        grant = self.query_one(GrantsPane).selected
        if grant is None:
            self.notify("No grant is selected.", severity="warning")
            return
        question = f"Revoke {grant.grant_id}?"
        detail = f"{grant.description}\nCalls it let through will need approval again."
        asked = ConfirmScreen(visible(question), visible(detail, keep="\n"), yes="Revoke")
        if await self.push_screen_wait(asked):
            self._revoke(grant.grant_id)

    # -- messages -------------------------------------------------------------------------------

    def on_grants_loaded(self, message: GrantsLoaded) -> None:
        """Show the grants (or say why not)."""
        if not self.is_running:
            return
        if message.ok:
            self.query_one(GrantsPane).show_grants(message.grants, self.clock())
        else:
            title = "Could not list the grants"
            self.notify(visible(message.reason), title=title, severity="error", markup=False)
