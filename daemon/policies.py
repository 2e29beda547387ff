"""Policies by (file, server name), loaded once and reloaded when the file changes.

A file that turns bad keeps its last good policy in force (and the error is reported); a file
that was never good leaves the session with no policy, and every call is then denied.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.config import ConfigError
from daemon.policy import Policy, load_policy

log = logging.getLogger("firewalld")

#: How often a policy file is looked at again.
_RECHECK = 1.0


@dataclass(slots=True)
class _Entry:
    policy: Policy | None
    error: str | None
    stamp: tuple[int, int, int] | None
    checked: float


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyCache:
    """Loads and watches policy files."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str | None, str | None], _Entry] = {}
        #: Called (with the file's path) when a policy in force is replaced by a reloaded one:
        #: the daemon revokes every lease (see :meth:`daemon.server.Firewalld.verdicts_changed`).
        self.on_change: Callable[[str], None] | None = None

    def recheck_all(self, *, force: bool = False) -> list[str]:
        """Look at every known policy file again (``force``: now, as on SIGHUP).

        Returns the load errors that are new since the last look, for the consoles.
        """
        fresh = []
        for key, entry in list(self._entries.items()):
            before = entry.error
            if force:
                entry.checked = float("-inf")
                entry.stamp = None if key[0] is not None else entry.stamp
            _, error = self.get(*key)
            if error and error != before:
                fresh.append(error)
        return fresh

    def get(self, path: str | None, server: str | None) -> tuple[Policy | None, str | None]:
        """The policy in force for ``(path, server)`` and the latest load error, if any."""
        key = (path, server)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and (path is None or now - entry.checked < _RECHECK):
            return entry.policy, entry.error
        stamp = _stamp(path)
        if entry is not None:
            entry.checked = now
            if stamp == entry.stamp:
                return entry.policy, entry.error
        try:
            policy = load_policy(path, server)
        except ConfigError as exc:
            error = str(exc)
            if entry is None:
                entry = _Entry(None, error, stamp, now)
                self._entries[key] = entry
                log.error("policy %s: %s", path or "(bundled)", error)
            else:
                if error != entry.error:
                    log.error("policy %s did not reload; the last good one stays in force: %s", path, error)
                entry.error, entry.stamp = error, stamp
            return entry.policy, entry.error
        self._entries[key] = _Entry(policy, None, stamp, now)
        if entry is not None:
            log.info("policy %s reloaded", path)
            if self.on_change is not None:
                self.on_change(path or "(bundled)")
        for warning in policy.warnings:
            log.warning("policy %s: %s", path or "(bundled)", warning)
        return policy, None
