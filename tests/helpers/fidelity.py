"""Shared pieces of the fidelity and hostility tests: policies, servers and the shim around them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from helpers.mcp_agent import FIXTURES

ROOT = FIXTURES.parents[1]
SCRIPTED_SERVER = FIXTURES / "scripted_server.py"
FIDELITY_SERVER = FIXTURES / "fidelity_server.py"
MCP1_SERVER = FIXTURES / "mcp1_server.py"
MCP1_PYTHON = ROOT / "tests" / ".venv-mcp1" / "bin" / "python"
NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"
NODE22_DIR = ROOT / "tests" / "node22"

#: Everything is allowed: allowed cells compare like for like with a direct connection.
PERMISSIVE: dict[str, Any] = {
    "global": {"allow_prefixes": [], "block_keywords": [], "default_action": "allow"}
}
#: Everything is allowed except names with these keywords, which need approval.
GUARDED: dict[str, Any] = {
    "global": {
        "allow_prefixes": [],
        "block_keywords": ["delete", "ask", "task", "write", "edit", "move", "transfer", "create"],
        "default_action": "allow",
    }
}


def write_policy(directory: Path, name: str, policy: dict[str, Any]) -> Path:
    """Write ``policy`` as ``directory/name.json`` and return its path."""
    path = directory / f"{name}.json"
    path.write_text(json.dumps(policy))
    return path


def scripted_command(record: Path, effects: Path, *, legacy_only: bool = False) -> list[str]:
    """The scripted server, recording what it receives in ``record`` and its effects in ``effects``."""
    cmd = [sys.executable, str(SCRIPTED_SERVER), "--record", str(record), "--effects", str(effects)]
    return [*cmd, "--legacy-only"] if legacy_only else cmd


def recorded(record: Path) -> list[bytes]:
    """The lines a scripted server received, byte for byte (without newlines)."""
    if not record.exists():
        return []
    return record.read_bytes().splitlines()


def effects(path: Path) -> list[dict[str, Any]]:
    """The side effects a server recorded."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
