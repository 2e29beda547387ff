"""One-time approval codes: made with :mod:`secrets`, held only in the daemon's memory.

Nothing on disk, and nothing an MCP server could read, can give a code back: the database keeps
no code, no MAC of one and no sealed copy (a 6-digit code behind a MAC is ten seconds of brute
force for whoever also has the key), and there is no key file. The price is that codes do not
survive the daemon: after a restart every open action gets a new code, shown in the console,
and the old one is void (see :meth:`daemon.pending.PendingActions.reissue`).

The process itself is made non-dumpable where the system allows it (:func:`make_undumpable`), so
other processes of the same user cannot read the codes out of its memory through
``/proc/PID/mem`` or ``ptrace``; the console, which shows the codes, does the same.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys

log = logging.getLogger("firewalld")

#: ``prctl(PR_SET_DUMPABLE, 0)``: Linux's PR_SET_DUMPABLE is 4.
_PR_SET_DUMPABLE = 4


class CodeBook:
    """The codes of the open actions, by action id. Lives and dies with the process."""

    def __init__(self) -> None:
        self._codes: dict[str, str] = {}

    @staticmethod
    def new_code(length: int) -> str:
        """A uniformly random code of ``length`` decimal digits."""
        return str(secrets.randbelow(10**length)).zfill(length)

    def mint(self, action_id: str, length: int, taken: list[str]) -> str:
        """Make and remember a code for ``action_id`` that differs from the codes of ``taken``.

        Two waiting actions of one session never share a code: a code names its action.
        """
        others = {self._codes[a] for a in taken if a in self._codes}
        code = self.new_code(length)
        while code in others:
            code = self.new_code(length)
        self._codes[action_id] = code
        return code

    def code_of(self, action_id: str) -> str | None:
        """The code of an action (for a console), or None if this process never made one."""
        return self._codes.get(action_id)

    def matches(self, action_id: str, code: str) -> bool:
        """Constant-time check of ``code`` against the action's code (False if it has none)."""
        known = self._codes.get(action_id)
        # Compare against a stand-in when there is no code, so the time taken says nothing.
        return hmac.compare_digest((known or "\0" * len(code)).encode(), code.encode()) and known is not None

    def forget(self, action_id: str) -> None:
        """Drop the code of an action that is closed for good."""
        self._codes.pop(action_id, None)


def make_undumpable() -> bool:
    """Close this process's memory to other processes of the same user, where the OS allows it.

    On Linux, ``prctl(PR_SET_DUMPABLE, 0)`` makes ``/proc/PID/mem``, ``/proc/PID/environ`` and
    ``ptrace`` refuse everyone but root, and no core dump is written. Elsewhere this does
    nothing (and returns False). Best effort: a failure is logged, never raised.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")
    except (OSError, AttributeError) as exc:
        log.warning("could not make the process non-dumpable: %s", exc)
        return False
    return True
