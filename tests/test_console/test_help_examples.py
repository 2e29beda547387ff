"""Every subcommand's --help ends with an example (argparse epilog), in all three commands."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from console.cli import _parser as console_parser
from daemon.cli import _parser as daemon_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize(
    ("prog", "parser"), [("firewalld", daemon_parser()), ("firewall-console", console_parser())]
)
def test_every_subcommand_has_an_example(prog: str, parser: argparse.ArgumentParser) -> None:
    """Each subcommand's help shows at least one full command line to copy."""
    for name, sub in _subcommands(parser).items():
        help_text = sub.format_help()
        assert "example" in help_text, f"{prog} {name} --help has no example"
        assert f"{prog} {name}" in help_text or (name == "run" and f"{prog} run" in help_text), name


def test_the_shim_help_has_examples_and_the_search_order() -> None:
    """mcp-action-firewall --help shows examples and where the policy is looked for."""
    result = subprocess.run(
        [sys.executable, "-m", "shim", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "examples:" in result.stdout and "mcp-action-firewall --name stripe" in result.stdout
    assert "firewalld init" in result.stdout and "--strict-name" in result.stdout
