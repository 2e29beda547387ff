"""The servers of the transparency matrix, and what each cell asks them.

Four real servers: ``@modelcontextprotocol/server-everything`` and ``server-filesystem`` (npm, in
``tests/node``), the project's fixture server on ``mcp`` 2.x, and a server on ``mcp`` 1.x (in its own
virtual environment). For each: the allowed calls whose results must match with and without the shim
(a progress-reporting one and a failing one among them), and one call that the matrix policy pauses,
with the check that the approved call really ran.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.fidelity import MCP1_PYTHON, MCP1_SERVER, NODE_BIN, effects
from helpers.mcp_agent import FIXTURE_SERVER

#: Every call allowed, except names with these keywords, which need approval (one per server).
MATRIX_POLICY: dict[str, Any] = {
    "global": {"allow_prefixes": [], "block_keywords": ["delete", "write", "sum"], "default_action": "allow"}
}
Call = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ServerSpec:
    """One server of the matrix."""

    name: str
    command: Callable[[Path], list[str]]  # given a fresh working directory
    calls: tuple[Call, ...]  # allowed calls whose results must be identical
    progress: tuple[str, dict[str, Any], int]  # a call that reports this many progress notifications
    approval: Call  # a call the matrix policy pauses
    ran: Callable[[Path], bool]  # did the approved call run (read from the working directory)?


def _node(binary: str) -> str:
    path = NODE_BIN / binary
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make node` (the test command does)")
    return str(path)


def _everything(work: Path) -> list[str]:
    return [_node("mcp-server-everything")]


def _filesystem(work: Path) -> list[str]:
    root = work / "files"
    root.mkdir(exist_ok=True)
    (root / "hello.txt").write_text("hello, wörld ✓\n", encoding="utf-8")
    (root / "sub").mkdir(exist_ok=True)
    return [_node("mcp-server-filesystem"), str(root)]


def _fixture(work: Path) -> list[str]:
    return [sys.executable, str(FIXTURE_SERVER), "--effects", str(work / "effects")]


def _mcp1(work: Path) -> list[str]:
    if not MCP1_PYTHON.exists():
        pytest.fail(f"{MCP1_PYTHON} is missing: run `make mcp1` (the test command does)")
    return [str(MCP1_PYTHON), str(MCP1_SERVER), "--effects", str(work / "effects")]


SERVERS: dict[str, ServerSpec] = {
    "everything": ServerSpec(
        "everything",
        _everything,
        calls=(
            ("echo", {"message": "héllo \u2028 😀"}),
            ("get-structured-content", {"location": "Chicago"}),
            ("get-tiny-image", {}),
            ("get-annotated-message", {"messageType": "success"}),
            ("echo", {}),  # invalid arguments: an error result
        ),
        progress=("trigger-long-running-operation", {"duration": 0.3, "steps": 3}, 3),
        approval=("get-sum", {"a": 2, "b": 3}),
        ran=lambda work: True,  # the sum's answer is checked by the caller
    ),
    "filesystem": ServerSpec(
        "filesystem",
        _filesystem,
        calls=(
            ("list_allowed_directories", {}),
            ("read_text_file", {"path": "{root}/hello.txt"}),
            ("list_directory", {"path": "{root}"}),
            ("read_text_file", {"path": "{root}/missing.txt"}),  # an error result
        ),
        progress=("", {}, 0),
        approval=("write_file", {"path": "{root}/out.txt", "content": "frozen ✓"}),
        ran=lambda work: (work / "files" / "out.txt").read_text(encoding="utf-8") == "frozen ✓",
    ),
    "fixture-mcp2": ServerSpec(
        "fixture-mcp2",
        _fixture,
        calls=(
            ("read_note", {"name": "naïve \u2029 ✓"}),
            ("get_forecast", {"city": "Oslo"}),
            ("get_echo", {"payload": {"b": [1, 2.5, None], "a": "ü"}}),
            ("delete_user", {"id": -1}),  # paused by the approval policy only; allowed here: an error result
        ),
        progress=("get_slow", {"seconds": 0.03, "steps": 3}, 3),
        approval=("delete_user", {"id": 42}),
        ran=lambda work: effects(work / "effects") == [{"id": 42, "tool": "delete_user"}],
    ),
    "fixture-mcp1": ServerSpec(
        "fixture-mcp1",
        _mcp1,
        calls=(
            ("read_note", {"name": "naïve \u2029 ✓"}),
            ("get_echo", {"payload": {"b": [1, 2.5, None], "a": "ü"}}),
            ("delete_user", {"id": -1}),
        ),
        progress=("get_slow", {"seconds": 0.03, "steps": 3}, 3),
        approval=("delete_user", {"id": 42}),
        ran=lambda work: effects(work / "effects") == [{"id": 42, "tool": "delete_user"}],
    ),
}


def rooted(arguments: dict[str, Any], work: Path) -> dict[str, Any]:
    """Arguments with ``{root}`` replaced by the filesystem server's root under ``work``."""
    root = str(work / "files")
    return {k: v.replace("{root}", root) if isinstance(v, str) else v for k, v in arguments.items()}
