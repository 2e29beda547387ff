"""How a console is shown a paused call's arguments: whole, or cut to a preview with their size and
hash, and fetched piece by piece (:class:`~daemon.protocol.ShowArguments`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

#: Arguments over this many bytes of JSON are cut from listings.
ARGUMENTS_LISTED = 16 * 1024
#: How much of cut arguments a listing still carries.
ARGUMENTS_PREVIEW = 2 * 1024
#: Bytes of arguments per :class:`~daemon.protocol.ArgumentsPiece`.
ARGUMENTS_PIECE = 8 * 1024 * 1024


def shown_arguments(params: bytes) -> bytes:
    """What a console shows of a paused call: its arguments, as UTF-8 JSON text.

    The retry of an approved call adds ``inputResponses``: judged, and shown, as one more argument.
    """
    value = json.loads(params)
    shown = value.get("arguments") or {}
    if isinstance(shown, dict) and "inputResponses" in value:
        shown = {**shown, "inputResponses": value["inputResponses"]}
    try:
        return json.dumps(shown, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (sent as an escape): keep it an escape, still exact
        return json.dumps(shown).encode()


@dataclass(frozen=True, slots=True)
class ArgumentsView:
    """How a listing shows one action's arguments: whole, or cut with their size and hash."""

    listed: str
    cut: bool
    size: int
    sha256: str

    @classmethod
    def of(cls, params: bytes, text: bytes | None = None) -> ArgumentsView:
        """The view of a paused call's params (``text``: its :func:`shown_arguments`, if known)."""
        data = shown_arguments(params) if text is None else text
        digest = hashlib.sha256(data).hexdigest()
        if len(data) <= ARGUMENTS_LISTED:
            return cls(data.decode(), False, len(data), digest)
        return cls(data[:ARGUMENTS_PREVIEW].decode("utf-8", "ignore"), True, len(data), digest)
