"""firewalld's background chores: the once-a-second housekeeping (policies, expiries, abandoned
sessions, checkpoint, hourly pruning) and the ingester that moves the audit spool into the table."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio

from daemon import protocol as p
from daemon.state import DaemonState

log = logging.getLogger("firewalld")
T = TypeVar("T")

#: Audit rows spooled before the ingester moves them into the table without waiting for its second.
INGEST_AFTER = 256


class Housekeeping(DaemonState):
    """The daemon's periodic tasks; each step that fails is logged once and tried again."""

    async def _ingester(self) -> None:
        """Move the audit spool into the table every second, or as soon as it holds
        :data:`INGEST_AFTER` rows (so that each bulk insert stays well under a millisecond)."""
        while True:
            with anyio.move_on_after(1.0):
                await self._ingest.wait()
            self._ingest = anyio.Event()
            try:
                self.store.ingest()
            except Exception as exc:  # the rows stay in the spool, and in memory, for the next try
                log.error("could not move the audit spool into the database: %r", exc)
                await anyio.sleep(1.0)  # however often batches ask

    async def _housekeeping(self) -> None:
        """Once a second: policies, expiries, abandoned sessions, checkpoint, and hourly pruning.
        Each step is tried on its own; one that fails (a full disk, no file descriptors left) is
        logged once and tried again at the next tick, and never stops the daemon."""
        last_prune = 0.0
        while True:
            with anyio.move_on_after(1.0):
                await self._reload.wait()
            forced, self._reload = self._reload.is_set(), anyio.Event()
            if forced:
                log.info("re-reading the policy files (SIGHUP)")
            for error in self._step("policies", partial(self.policies.recheck_all, force=forced)) or []:
                await self.broadcast(p.Event("policy", error))
            if self.leases.revoking:
                self._step("leases", self.leases.enforce)
            if self._step("expiry", self._expire_and_abandon):
                await self.broadcast(p.Event("pending", "expired"))
            ended = self._step("grants", self.grants.expire)
            if ended:
                self._grants_changed(f"{len(ended)} grant(s) ended")
            if self._audit_dirty:  # at most once a second, so a busy server cannot flood consoles
                self._audit_dirty = False
                await self.broadcast(p.Event("audit", ""))
            self._step("sessions", self._forget_old_sessions)
            self._step("counters", self.sessions.save_counts)
            try:
                await anyio.to_thread.run_sync(self.store.checkpoint)
                self._step("checkpoint", bool)
            except Exception as exc:
                self._step_failed("checkpoint", exc)
            now = time.time()
            if now - last_prune > 3600:
                settings = self.settings
                try:  # counting rows walks millions: off the loop (a read, which never blocks writes)
                    self.store.ingest()
                    cuts = await anyio.to_thread.run_sync(
                        self.store.audit_cuts, settings.audit_max_rows, settings.audit_max_security_rows
                    )
                except Exception as exc:
                    self._step_failed("prune", exc)
                    continue
                older = now - settings.audit_max_age_days * 86400
                if self._step("prune", partial(self.store.delete_audit, older, cuts)) is not None:
                    last_prune = now

    def _expire_and_abandon(self) -> bool:
        changed = bool(self.pending.expire())
        for session_id in self.store.sessions_with_open_actions():
            if not self.sessions.is_live(session_id):
                changed |= bool(self.pending.abandon_session(session_id))
        return changed

    def _forget_old_sessions(self) -> None:
        """A long-lived daemon serves thousands of chats: forget those long closed."""
        open_sessions = set(self.store.sessions_with_open_actions())
        for session_id in self.sessions.prune(time.time() - 3600, open_sessions):
            self.pending.forget_session(session_id)
            self.leases.forget(session_id)

    def _step(self, name: str, run: Callable[[], T]) -> T | None:
        """Run one housekeeping step; ``None`` (logged once until it works again) if it failed."""
        try:
            result = run()
        except Exception as exc:
            self._step_failed(name, exc)
            return None
        if name in self._failing:
            self._failing.discard(name)
            log.info("housekeeping: %s works again", name)
        return result

    def _step_failed(self, name: str, exc: Exception) -> None:
        if name not in self._failing:
            self._failing.add(name)
            if isinstance(exc, sqlite3.Error | OSError):
                log.error("housekeeping: %s failed (%s); trying again every second", name, exc)
            else:  # a bug: worth its traceback, once
                log.exception("housekeeping: %s failed; trying again every second", name)
