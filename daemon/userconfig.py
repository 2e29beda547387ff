"""Where the policy file is looked for, the user's own policy file, and ``firewalld init``.

Search order, first found wins (the shim applies it and tells the daemon the path it chose):

1. ``--config FILE``;
2. ``./firewall_config.json`` in the server's working directory;
3. the user's policy file: ``$XDG_CONFIG_HOME/mcp-action-firewall/firewall_config.json`` when
   ``XDG_CONFIG_HOME`` is set, else ``$HOME/.config/mcp-action-firewall/firewall_config.json``
   (MCP clients pass a minimal environment, usually without ``XDG_CONFIG_HOME``, so the
   ``$HOME/.config`` file is looked at too);
4. the bundled defaults (``daemon/default_config.json``).

Stdlib only: the shim imports this module at start, and reads at most one small JSON file here to
warn about a ``--name`` that matches no server section.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from daemon.protocol import APP, home_dir

CONFIG_NAME = "firewall_config.json"
#: The bundled defaults, used when no other policy file is found.
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.json")


def user_config_files(environ: Mapping[str, str] | None = None) -> list[str]:
    """The user's policy file locations, in search order (the first is where ``init`` writes)."""
    env = os.environ if environ is None else environ
    home = os.path.join(home_dir(env), ".config", APP, CONFIG_NAME)
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        first = os.path.join(xdg, APP, CONFIG_NAME)
        return [first] if first == home else [first, home]
    return [home]


def find_policy(cwd: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The policy file to use when ``--config`` is not given; None means the bundled defaults."""
    local = os.path.join(cwd, CONFIG_NAME)
    if os.path.isfile(local):
        return os.path.abspath(local)
    for path in user_config_files(environ):
        if os.path.isfile(path):
            return path
    return None


def server_sections(path: str | None) -> list[str] | None:
    """The server section names of a policy file (``None``: the bundled one), or None if it cannot
    be read as a JSON object (the daemon reports why, with the key at fault)."""
    try:
        with open(BUNDLED if path is None else path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    servers = data.get("servers", {}) if isinstance(data, dict) else None
    return [str(name) for name in servers] if isinstance(servers, dict) else None


def unknown_name(name: str | None, sections: list[str] | None, where: str) -> str | None:
    """The warning for a ``--name`` that matches no server section of ``where`` (the policy file,
    as the user knows it), or None if it matches (or there is no name, or no known sections)."""
    if name is None or sections is None or name in sections:
        return None
    import difflib

    close = difflib.get_close_matches(name, sections, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(repr(s) for s in sections) or "none"
    return (
        f"--name {name!r} matches no server section of {where} (its sections: {known}{hint}), "
        "so only the global rules apply"
    )


def starter_policy() -> str:
    """The text ``firewalld init`` writes: the bundled policy, with notes on how to change it."""
    with open(BUNDLED, encoding="utf-8") as f:
        policy = json.load(f)
    policy["description"] = [
        "Your MCP Action Firewall policy, written by `firewalld init` from the bundled defaults.",
        "JSON has no comments, so every section has a 'description' instead; change them freely.",
        "Found by every shim that has no --config and no ./firewall_config.json in its server's directory.",
        "Edits apply within a second, no restart needed; a broken edit keeps the last good policy in force.",
        "Check it with `firewalld check-config FILE`; ask what it does with a call with",
        "`firewalld explain --name NAME TOOL '{\"arg\": 1}'`.",
        "config.example.json (in the project) shows every key.",
    ]
    policy["global"] = {
        "description": [
            "Applies to every server. A call is judged by rules (first match wins), then block_keywords",
            "(approval), then allow_prefixes (allowed), then default_action ('block' = needs approval).",
        ],
        **policy["global"],
    }
    policy["servers"] = {
        name: {
            "description": f"Used by a shim started with --name {name}; its lists extend the global ones.",
            **section,
        }
        for name, section in policy.get("servers", {}).items()
    }
    return json.dumps(policy, indent=2, ensure_ascii=False) + "\n"


def write_starter(path: str, *, force: bool) -> None:
    """Write :func:`starter_policy` to ``path`` (its directory made 0700 if new).

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
    """
    text = starter_policy()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # O_NOFOLLOW: a symlink planted where the policy goes is refused, never written through.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
