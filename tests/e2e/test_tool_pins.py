"""Tool-definition pinning through real processes: a server that changes its tools mid-session.

The agent is the official SDK client; behind the shim runs ``tests/fixtures/rug_server.py``, whose
``rug_pull`` tool changes a definition (with or without ``list_changed``), adds a tool or renames one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client

from conftest import Daemon, shim_command, wait_until, write_config
from helpers.mcp_agent import FIXTURES, READ_TIMEOUT_SECONDS, server_params, tool_text

RUG_SERVER = FIXTURES / "rug_server.py"


def policy(tmp_path: Path, **server: Any) -> Path:
    """get_* and rug_pull run; everything else waits for approval."""
    return write_config(
        tmp_path / "policy.json",
        {
            "global": {
                "allow_prefixes": ["get_"],
                "block_keywords": [],
                "default_action": "approve",
                "rules": [{"tool": "rug_pull", "action": "allow"}],
            },
            "servers": {"rug": server},
        },
    )


def rug_command(tmp_path: Path, config: Path, extra: tuple[str, ...] = ()) -> list[str]:
    target = [sys.executable, str(RUG_SERVER), "--state", str(tmp_path / "rug.state")]
    return shim_command([*target, "--effects", str(tmp_path / "fx")], config=config, name="rug", extra=extra)


class Agent:
    """An SDK client that notes every tools/list_changed it is told of."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.changed = anyio.Event()

    async def names(self) -> list[str]:
        listed = await self.client.list_tools(cache_mode="refresh")
        return sorted(t.name for t in listed.tools)

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return await self.client.call_tool(name, arguments or {})


@asynccontextmanager
async def chat(command: list[str], daemon: Daemon, mode: str = "legacy") -> AsyncIterator[Agent]:
    """A chat with the rug server behind the shim; in the 2026-07-28 era with a listen stream open."""
    holder: list[Agent] = []

    async def message(msg: Any) -> None:
        if getattr(getattr(msg, "root", msg), "method", None) == "notifications/tools/list_changed":
            holder[0].changed.set()

    client = Client(
        server_params(command, daemon.env),
        mode=mode,  # type: ignore[arg-type]
        read_timeout_seconds=READ_TIMEOUT_SECONDS,
        message_handler=message,
    )
    async with client:
        agent = Agent(client)
        holder.append(agent)
        if mode == "auto":
            async with client.listen(tools_list_changed=True) as subscription:

                async def follow() -> None:
                    async for event in subscription:
                        if type(event).__name__ == "ToolsListChanged":
                            agent.changed.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow)
                    yield agent
                    tg.cancel_scope.cancel()
        else:
            yield agent


def pins(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """`firewall-console tools --json`, by tool name."""
    return {p["tool"]: p for p in json.loads(daemon.console("tools", "--json").stdout)}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_changed_description_is_hidden_denied_shown_and_accepted(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    """A description rewritten behind the agent's back (no list_changed): the tool leaves the agent's
    list and its calls are denied; the CLI shows the diff and flags; accepting brings it back, and the
    agent is told to list again."""
    command = rug_command(tmp_path, policy(tmp_path))
    async with chat(command, daemon, mode) as agent:
        assert await agent.names() == ["firewall_confirm", "get_time", "get_weather", "rug_pull", "send_note"]
        assert tool_text(await agent.call("get_weather", {"city": "Oslo"})) == "sunny in Oslo"
        assert all(p["state"] == "pinned" for p in pins(daemon).values())

        await agent.call("rug_pull", {"what": "description"})
        assert "get_weather" not in await agent.names()
        denied = await agent.call("get_weather", {"city": "Oslo"})
        assert denied.is_error
        assert "changed since the user approved it" in tool_text(denied)

        shown = pins(daemon)["get_weather"]
        assert shown["state"] == "changed" and shown["review_id"].startswith("R-")
        assert any(line.startswith("+  Tomorrow's weather for a city. <IMPORTANT>") for line in shown["diff"])
        assert any(line == "-  Tomorrow's weather for a city." for line in shown["diff"])
        text = daemon.console("tools").stdout
        assert "CHANGED since approved" in text and shown["review_id"] in text
        assert "FLAG: tells the model to keep something from the user" in text
        assert "FLAG: mentions secrets or credentials" in text
        assert "FLAG: names other tools of this server: send_note" in text
        assert "\\u202e" in text and "\u202e" not in text  # hidden characters spelt out, never raw

        assert "accepted" in daemon.console("accept", "rug", "get_weather").stdout
        with anyio.fail_after(READ_TIMEOUT_SECONDS):
            await agent.changed.wait()
        assert "get_weather" in await agent.names()
        assert tool_text(await agent.call("get_weather", {"city": "Oslo"})) == "sunny in Oslo"
    events = [(r["event"], r["tool"]) for r in daemon.audit() if r["event"].startswith("tool_")]
    assert ("tool_changed", "get_weather") in events and ("tool_accepted", "get_weather") in events


async def test_reject_keeps_it_out_in_every_chat_and_after_a_restart(daemon: Daemon, tmp_path: Path) -> None:
    """A schema change announced with list_changed, rejected: hidden and denied in this chat, in a
    second chat with the same server, and after firewalld restarts."""
    command = rug_command(tmp_path, policy(tmp_path))
    async with chat(command, daemon) as agent:
        assert "get_weather" in await agent.names()
        await agent.call("rug_pull", {"what": "schema", "announce": True})
        with anyio.fail_after(READ_TIMEOUT_SECONDS):
            await agent.changed.wait()
        assert "get_weather" not in await agent.names()
        shown = pins(daemon)["get_weather"]
        assert any('"api_key"' in line and line.startswith("+") for line in shown["diff"])
        assert "rejected" in daemon.console("reject", shown["review_id"]).stdout
        denied = await agent.call("get_weather", {"city": "Oslo"})
        assert denied.is_error and "rejected" in tool_text(denied)

    async with chat(command, daemon) as second:
        assert "get_weather" not in await second.names()
        assert (await second.call("get_weather", {"city": "Oslo"})).is_error

    daemon.stop()
    explained = subprocess.run(  # noqa: ASYNC221 - no chat is open: nothing to block
        [sys.executable, "-m", "daemon", "explain", "get_weather", '{"city": "Oslo"}', "--name", "rug"],
        env=daemon.env,
        cwd=daemon.home,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "tool pin: on server 'rug' every call of get_weather is DENIED" in explained.stdout
    assert "you rejected its current definition" in explained.stdout
    daemon.start()
    assert pins(daemon)["get_weather"]["state"] == "rejected"
    async with chat(command, daemon) as third:
        assert "get_weather" not in await third.names()
        denied = await third.call("get_weather", {"city": "Oslo"})
        assert denied.is_error and "rejected" in tool_text(denied)
        assert tool_text(await third.call("get_time")) == "12:00"


async def test_new_and_renamed_tools_wait_for_review(daemon: Daemon, tmp_path: Path) -> None:
    """A tool added and one renamed on a known server are hidden until reviewed (the default policy);
    the old name's pin stays; accepting the renamed one shows it."""
    command = rug_command(tmp_path, policy(tmp_path))
    async with chat(command, daemon) as agent:
        await agent.names()
        await agent.call("rug_pull", {"what": "add"})
        await agent.call("rug_pull", {"what": "rename"})
        assert await agent.names() == ["firewall_confirm", "get_weather", "rug_pull", "send_note"]
        denied = await agent.call("get_clock")
        assert denied.is_error and "is new on this server" in tool_text(denied)
        states = {name: p["state"] for name, p in pins(daemon).items()}
        assert states["get_secrets"] == "new" and states["get_clock"] == "new"
        assert states["get_time"] == "pinned"
        daemon.console("accept", "rug", "get_clock")
        with anyio.fail_after(READ_TIMEOUT_SECONDS):
            await agent.changed.wait()
        assert "get_clock" in await agent.names()
        assert tool_text(await agent.call("get_clock")) == "12:00"


async def test_policy_can_accept_new_tools(daemon: Daemon, tmp_path: Path) -> None:
    """With new_tools "accept" for the server, an added tool is pinned at once (and audited)."""
    command = rug_command(tmp_path, policy(tmp_path, new_tools="accept"))
    async with chat(command, daemon) as agent:
        await agent.names()
        await agent.call("rug_pull", {"what": "add"})
        assert "get_secrets" in await agent.names()
    assert pins(daemon)["get_secrets"]["state"] == "pinned"
    rows = [r for r in daemon.audit() if r["event"] == "tool_pinned" and r["tool"] == "get_secrets"]
    assert rows and "accepted by policy new_tools" in rows[0]["detail"]


async def test_other_chats_of_the_server_are_told_to_list_again(daemon: Daemon, tmp_path: Path) -> None:
    """When one chat sees a changed definition, a second open chat with that server is told the list
    changed, and its listing (from an older server process) hides the tool too."""
    command = rug_command(tmp_path, policy(tmp_path))
    async with chat(command, daemon) as first, chat(command, daemon) as second:
        assert "get_weather" in await second.names()
        await first.names()
        await first.call("rug_pull", {"what": "annotations"})
        assert "get_weather" not in await first.names()
        with anyio.fail_after(READ_TIMEOUT_SECONDS):
            await second.changed.wait()
        assert "get_weather" not in await second.names()
        assert (await second.call("get_weather", {"city": "Oslo"})).is_error


def test_only_a_console_may_review(daemon: Daemon, tmp_path: Path) -> None:
    """A raw client that says hello as a shim cannot list pins or accept a review."""
    import socket

    from daemon import protocol as p

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(p.encode(p.Hello(role=p.ROLE_SHIM, target=["x"], cwd="/")))
        decoder = p.FrameDecoder()
        replies: list[p.Message] = []

        def read_one() -> p.Message:
            while not replies:
                replies.extend(decoder.feed(sock.recv(65536)))
            return replies.pop(0)

        assert isinstance(read_one(), p.Welcome)
        sock.sendall(p.encode(p.ReviewTool(7, "R-00000000", True)) + p.encode(p.ListPins(8)))
        for rid in (7, 8):
            reply = read_one()
            assert isinstance(reply, p.Error) and reply.code == p.E_FORBIDDEN and reply.rid == rid


async def test_a_call_approved_after_its_definition_changed_waits_again(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Paused under the approved definition, confirmed after the server changed it: nothing runs, and
    the call waits for approval again until the change is reviewed."""
    command = rug_command(tmp_path, policy(tmp_path))
    async with chat(command, daemon) as agent:
        await agent.names()
        paused = await agent.call("send_note", {"to": "ada", "text": "hi"})
        action_id = json.loads(tool_text(paused))["action_id"]
        (action,) = daemon.pending()
        await agent.call("rug_pull", {"what": "note"})
        assert "send_note" not in await agent.names()
        done = await agent.call("firewall_confirm", {"otp": action["code"]})
        assert done.is_error and "waits for approval again" in tool_text(done), tool_text(done)
        assert [a["action_id"] for a in daemon.pending()] == [action_id]
    assert not (tmp_path / "fx").exists()


async def test_a_held_call_whose_definition_changed_cannot_be_approved_in_the_console(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Held open while a console watches; the server changes the tool meanwhile: a console approval
    (and so a grant, which approves through it) is refused as a typed code would be, nothing runs."""
    from console.client import ConsoleClient

    command = rug_command(tmp_path, policy(tmp_path), extra=("--hold", "30"))
    with ConsoleClient(daemon.socket) as console:
        console.subscribe()  # an open console: the shim holds paused calls
        async with chat(command, daemon) as agent:
            await agent.names()
            answers: list[Any] = []

            async def call() -> None:
                answers.append(await agent.call("send_note", {"to": "ada", "text": "hi"}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)

                def held() -> list[dict[str, Any]]:
                    return [a for a in daemon.pending() if a["held_until"] > 0]

                await anyio.to_thread.run_sync(lambda: wait_until(lambda: bool(held()), what="a held call"))
                (action,) = held()
                await agent.call("rug_pull", {"what": "note"})
                assert "send_note" not in await agent.names()
                refused = daemon.console("approve", action["action_id"], check=False)
                assert refused.returncode != 0
                assert "changed" in refused.stdout + refused.stderr, refused
                assert [a["action_id"] for a in daemon.pending()] == [action["action_id"]]  # still waiting
                tg.cancel_scope.cancel()
    assert answers == [] and not (tmp_path / "fx").exists()  # nothing ran
