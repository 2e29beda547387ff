"""How many tools the default policy pauses: ``python -m bench.pauses [--repo TREE] [--config FILE]``.

Lists the tools of the reference servers (``@modelcontextprotocol/server-everything`` and
``server-filesystem``, from ``tests/node``) and of the test fixture server, each over stdio with the
official SDK client, then asks a checkout's policy engine what a call of each tool with no arguments
gets: the bundled policy (or ``--config``) as it stands, and again with ``trust_annotations`` on for
that server, where the tool's listed annotations count. Prints one line per server with the share
that is paused (``approve``) or denied, then each tool's verdict with ``-v``.

``--repo TREE`` judges with another checkout's ``daemon`` package (for a before/after, e.g. the main
checkout); the tools are always listed with this one's servers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"
#: (name for --name, command); the filesystem server gets a temporary root.
SERVERS = ("everything", "filesystem", "fixture")


def _commands(scratch: Path) -> dict[str, list[str]]:
    return {
        "everything": [str(NODE_BIN / "mcp-server-everything")],
        "filesystem": [str(NODE_BIN / "mcp-server-filesystem"), str(scratch)],
        "fixture": [
            sys.executable,
            str(ROOT / "tests" / "fixtures" / "fixture_server.py"),
            "--effects",
            str(scratch / "effects"),
        ],
    }


async def list_tools(command: list[str], home: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """The server's tools and their annotations (as the shim would record them), in listed order."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.mcp_agent import connect, minimal_env

    async with connect(command, mode="legacy", env=minimal_env(home)) as client:
        tools = (await client.list_tools()).tools
    return [
        (t.name, t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None)
        for t in tools
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose daemon judges")
    parser.add_argument("--config", help="policy file (default: the checkout's bundled policy)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every tool's verdict")
    args = parser.parse_args(argv)

    import anyio

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        listed = {name: anyio.run(list_tools, cmd, scratch) for name, cmd in _commands(scratch).items()}

    sys.path.insert(0, str(args.repo.resolve()))
    for module in [m for m in sys.modules if m == "daemon" or m.startswith("daemon.")]:
        del sys.modules[module]
    from daemon.config import load_config
    from daemon.policy import compile_policy

    cfg = load_config(args.config)
    print(f"policy: {args.config or 'bundled'} judged by {args.repo.resolve()}/daemon")
    print(f"{'server':<12}{'tools':>6}{'paused':>14}{'paused, trusted':>18}")
    for name, tools in listed.items():
        trusted_cfg = cfg.model_copy(update={"servers": {**cfg.servers, name: _trusting(cfg, name)}})
        plain, trusted = compile_policy(cfg, name), compile_policy(trusted_cfg, name)
        verdicts = [(t, plain.decide(t, {}, a), trusted.decide(t, {}, a)) for t, a in tools]
        n = len(tools)
        held = sum(v.action != "allow" for _, v, _ in verdicts)
        held_t = sum(v.action != "allow" for _, _, v in verdicts)
        print(f"{name:<12}{n:>6}{held:>7} ({held / n:4.0%}){held_t:>10} ({held_t / n:4.0%})")
        if args.verbose:
            for tool, v, vt in verdicts:
                print(f"    {tool:<32}{v.action:<8} {v.rule}\n    {'':<32}{vt.action:<8} {vt.rule} (trusted)")
    return 0


def _trusting(cfg: Any, name: str) -> Any:
    """The server's section with trust_annotations on (a new one if the policy has none)."""
    from daemon.config import ServerSection

    section = cfg.servers.get(name)
    if section is None:
        return ServerSection(trust_annotations=True)
    return section.model_copy(update={"trust_annotations": True})


if __name__ == "__main__":
    sys.exit(main())
