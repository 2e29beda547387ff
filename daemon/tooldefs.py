"""What a tool definition is, for pinning, and whose it is (see :mod:`daemon.pins`).

A definition is pinned as canonical JSON of the members in :data:`FIELDS` (sorted keys, compact,
ASCII) and its SHA-256; a server is known by its ``--name``, else its command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The members of a tool definition that are pinned.
FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def server_identity(server: str | None, target: Sequence[str], cwd: str = "") -> str:
    """Whose pins a session shares: the ``--name``, else the command line, its relative paths
    (those that exist under ``cwd``) made absolute, so that ``node server.js`` in two projects
    is two servers."""
    if server:
        return server
    args = []
    for i, arg in enumerate(target):
        if cwd and arg and not os.path.isabs(arg) and not arg.startswith("-") and (i > 0 or "/" in arg):
            full = os.path.join(cwd, arg)
            if os.path.exists(full):
                arg = os.path.normpath(full)
        args.append(arg)
    return shlex.join(args)


@dataclass(frozen=True, slots=True)
class Definition:
    """One listed tool, canonical."""

    name: str
    text: str
    digest: str
    annotations: dict[str, Any]

    def without_text(self) -> Definition:
        """The same, less its text (what :class:`~daemon.pins.Pins` remembers)."""
        return Definition(self.name, "", self.digest, self.annotations)


def canonical(raw: bytes) -> Definition | None:
    """The pinned form of a tool definition sent by a shim, or None if it is not one."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    picked = {k: value[k] for k in FIELDS if k in value}
    try:
        text = json.dumps(picked, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (ValueError, RecursionError):
        return None
    annotations = value.get("annotations")
    return Definition(
        value["name"],
        text,
        hashlib.sha256(text.encode()).hexdigest(),
        annotations if isinstance(annotations, dict) else {},
    )


def text_of(item: bytes) -> str:
    """The canonical text of a definition already found valid (see :meth:`Pins._known_definition`)."""
    found = canonical(item)
    assert found is not None
    return found.text
