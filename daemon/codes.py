"""One-time approval codes: made with :mod:`secrets`, kept only as a MAC and a sealed copy.

The daemon must both check a code and show it again in the console after a restart, so the
pending-actions table holds an HMAC (to check, in constant time) and the code sealed with a key
kept in the state directory (to show). Neither the database nor the audit log holds a code in
clear; someone with the key file and the database can recover open codes, which is why both live
in a 0700 directory and why the README's threat model says so.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets


class CodeBook:
    """Makes, checks and seals codes with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: str) -> CodeBook:
        """Load the key at ``path``, creating it (0600) on first use."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with open(path, "rb") as f:
                key = f.read()
            if len(key) == 32:
                return cls(key)
            raise ValueError(f"{path}: corrupt key file (remove it; open codes will be void)") from None
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return cls(key)

    @staticmethod
    def new_code(length: int) -> str:
        """A uniformly random code of ``length`` decimal digits."""
        return str(secrets.randbelow(10**length)).zfill(length)

    def mac(self, action_id: str, code: str) -> bytes:
        """The MAC that stands for ``code`` of ``action_id`` in the database."""
        return hmac.new(self._key, f"code\0{action_id}\0{code}".encode(), hashlib.sha256).digest()

    def matches(self, action_id: str, code: str, mac: bytes) -> bool:
        """Constant-time check of ``code`` against a stored MAC."""
        return hmac.compare_digest(self.mac(action_id, code), mac)

    def _pad(self, action_id: str, size: int) -> bytes:
        return hmac.new(self._key, f"seal\0{action_id}".encode(), hashlib.sha256).digest()[:size]

    def seal(self, action_id: str, code: str) -> bytes:
        """``code`` encrypted for storage (one-time pad derived from the key and the action id)."""
        raw = code.encode()
        return bytes(a ^ b for a, b in zip(raw, self._pad(action_id, len(raw)), strict=True))

    def unseal(self, action_id: str, sealed: bytes) -> str:
        """The code back from :meth:`seal` (for the console only)."""
        return bytes(a ^ b for a, b in zip(sealed, self._pad(action_id, len(sealed)), strict=True)).decode()
