"""Grants end to end: each scope lets through exactly what it says, and nothing an agent can send
makes, widens or reveals one.

The official SDK client is the agent (both protocol eras); a real firewalld; grants are made and
revoked with ``firewall-console``. Shims run without a hold, so a paused call is answered at once and
the grant applies to the agent's next calls.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from conftest import Daemon, effects_of, fixture_shim, shim_command, wait_until, write_config
from daemon import protocol as p
from helpers.mcp_agent import MODES, connect, tool_text

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"


def paused_id(result: Any) -> str:
    """The action id of a PAUSED_FOR_APPROVAL answer (fails the test on any other answer)."""
    text = tool_text(result)
    assert result.is_error and "PAUSED_FOR_APPROVAL" in text, text
    action_id: str = json.loads(text)["action_id"]
    return action_id


def grants(daemon: Daemon) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(daemon.console("grants", "--json").stdout)
    return listed


def grant_id_of(daemon: Daemon, action_id: str) -> str:
    (grant,) = [g for g in grants(daemon) if g["action_id"] == action_id]
    return str(grant["grant_id"])


@pytest.mark.parametrize("mode", MODES)
async def test_chat_grant_lets_this_tool_in_this_chat_through_until_revoked(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    async with (
        connect(fixture_shim(effects), mode=mode, env=daemon.env) as agent,
        connect(fixture_shim(effects), mode=mode, env=daemon.env) as other_chat,
    ):
        action_id = paused_id(await agent.call_tool("delete_user", {"id": 1}))
        made = daemon.console("grant", action_id, "--scope", "chat")
        assert "granted" in made.stdout and "not held open" in made.stdout
        assert tool_text(await agent.call_tool("delete_user", {"id": 2})) == "deleted user 2"
        assert tool_text(await agent.call_tool("delete_user", {"id": 3})) == "deleted user 3"
        # Nothing more: another tool of this chat, and the same tool in another chat, are paused.
        paused_id(await agent.call_tool("transfer_funds", {"amount": 5, "to": "x"}))
        paused_id(await other_chat.call_tool("delete_user", {"id": 4}))
        grant_id = grant_id_of(daemon, action_id)
        assert "revoked" in daemon.console("revoke", grant_id).stdout
        paused_id(await agent.call_tool("delete_user", {"id": 5}))
    assert [e["id"] for e in effects_of(effects)] == [2, 3]
    events = [(r["event"], r["rule"]) for r in daemon.audit() if r["event"].startswith("grant_")]
    assert ("grant_made", grant_id) in events and ("grant_revoked", grant_id) in events
    used = [r for r in daemon.audit() if r["event"] == "decision" and grant_id in (r["rule"] or "")]
    assert len(used) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_args_grant_covers_matching_arguments_of_its_server_until_it_expires(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    async with (
        connect(fixture_shim(effects, name="crm"), mode=mode, env=daemon.env) as agent,
        connect(fixture_shim(effects, name="crm"), mode=mode, env=daemon.env) as same_server,
        connect(fixture_shim(effects, name="billing"), mode=mode, env=daemon.env) as other_server,
    ):
        action_id = paused_id(await agent.call_tool("transfer_funds", {"amount": 5, "to": "alice"}))
        daemon.console("grant", action_id, "--scope", "args", "--equals", "to=alice", "--minutes", "5")
        ok = await agent.call_tool("transfer_funds", {"amount": 7, "to": "alice"})
        assert not ok.is_error, tool_text(ok)
        ok = await same_server.call_tool("transfer_funds", {"amount": 8, "to": "alice"})
        assert not ok.is_error, tool_text(ok)
        # Outside the pattern, or a look-alike the policy would fold together: paused.
        paused_id(await agent.call_tool("transfer_funds", {"amount": 9, "to": "bob"}))
        paused_id(await agent.call_tool("transfer_funds", {"amount": 9, "to": "ALICE"}))
        paused_id(await agent.call_tool("transfer_funds", {"amount": 9, "to": "ali\u200bce"}))
        paused_id(await agent.call_tool("transfer_funds", {"amount": 9, "to": ["alice"]}))
        paused_id(await agent.call_tool("delete_user", {"id": 1, "to": "alice"}))
        paused_id(await other_server.call_tool("transfer_funds", {"amount": 9, "to": "alice"}))
        # A second grant of 0.02 minutes, seen to end (one short enough to end while the calls
        # above run would make them race it on a busy host).
        action_id = paused_id(await agent.call_tool("transfer_funds", {"amount": 6, "to": "carol"}))
        daemon.console("grant", action_id, "--scope", "args", "--equals", "to=carol", "--minutes", "0.02")
        wait_until(lambda: len(grants(daemon)) == 1, what="the short grant to expire")
        paused_id(await agent.call_tool("transfer_funds", {"amount": 10, "to": "carol"}))
    assert [e["amount"] for e in effects_of(effects)] == [7, 8]
    assert any(r["event"] == "grant_expired" for r in daemon.audit())


async def test_grant_never_widens_a_deny_or_self_protection(daemon: Daemon, tmp_path: Path) -> None:
    effects = tmp_path / "fx"
    config = write_config(
        tmp_path / "policy.json",
        {
            "global": {
                "default_action": "approve",
                "rules": [{"tool": "delete_user", "args": [{"key": "id", "equals": 666}], "action": "deny"}],
            }
        },
    )
    async with connect(fixture_shim(effects, config=config), mode="legacy", env=daemon.env) as agent:
        action_id = paused_id(await agent.call_tool("delete_user", {"id": 1}))
        daemon.console("grant", action_id, "--scope", "chat")
        denied = await agent.call_tool("delete_user", {"id": 666})
        assert denied.is_error and "denied" in tool_text(denied) and "PAUSED" not in tool_text(denied)
        action_id = paused_id(await agent.call_tool("read_note", {"name": "a"}))
        daemon.console("grant", action_id, "--scope", "chat")
        state = str(daemon.state_dir / "firewall.db")
        refused = await agent.call_tool("read_note", {"name": state})
        assert refused.is_error and "firewall" in tool_text(refused) and "PAUSED" not in tool_text(refused)
        assert tool_text(await agent.call_tool("read_note", {"name": "b"})) == "note:b"
    assert effects_of(effects) == []


@pytest.mark.parametrize("mode", MODES)
async def test_always_grant_writes_the_policy_and_survives_a_restart(
    mode: str, daemon: Daemon, tmp_path: Path
) -> None:
    effects = tmp_path / "fx"
    original = '{\n  "description": "mine",\n  "global": {\n    "default_action": "approve"\n  }\n}\n'
    config = tmp_path / "policy.json"
    config.write_text(original)
    async with connect(fixture_shim(effects, config=config), mode=mode, env=daemon.env) as agent:
        action_id = paused_id(await agent.call_tool("delete_user", {"id": 1}))
        refused = daemon.console("grant", action_id, "--scope", "always", check=False)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert config.read_text() == original  # shown, not made
        shown = daemon.console("grant", action_id, "--scope", "always", "--yes")
        assert '+    "approved": [{"name": "added from the firewall console on' in shown.stdout
        data = json.loads(config.read_text())
        assert list(data) == ["description", "global"] and data["description"] == "mine"
        (rule,) = data["global"]["approved"]
        assert rule["tool"] == "delete_user" and rule["action"] == "allow" and action_id in rule["name"]
        assert config.read_text().startswith(original[: original.index("\n  }")])
        assert "OK" in daemon_cli("check-config", str(config), env=daemon.env)
        assert tool_text(await agent.call_tool("delete_user", {"id": 2})) == "deleted user 2"
        paused_id(await agent.call_tool("transfer_funds", {"amount": 1, "to": "x"}))
        daemon.stop()
        daemon.start()
        wait_until(lambda: bool([s for s in daemon_sessions(daemon) if s["connected"]]), what="reconnect")
        assert tool_text(await agent.call_tool("delete_user", {"id": 3})) == "deleted user 3"
    assert [e["id"] for e in effects_of(effects)] == [2, 3]
    explained = daemon_cli(
        "explain", "--config", str(config), "delete_user", '{"id": 9}', env=daemon.env, cwd=tmp_path
    )
    assert "global.approved[0]" in explained and explained.strip().endswith(".")


async def test_grant_survives_a_daemon_crash_and_explain_names_it(daemon: Daemon, tmp_path: Path) -> None:
    effects = tmp_path / "fx"
    async with connect(fixture_shim(effects, name="crm"), mode="legacy", env=daemon.env) as agent:
        action_id = paused_id(await agent.call_tool("transfer_funds", {"amount": 1, "to": "alice"}))
        daemon.console("grant", action_id, "--scope", "args", "--equals", "to=alice", "--minutes", "30")
        grant_id = grant_id_of(daemon, action_id)
        daemon.kill9()
        daemon.start()
        assert [g["grant_id"] for g in grants(daemon)] == [grant_id]
        wait_until(lambda: bool([s for s in daemon_sessions(daemon) if s["connected"]]), what="reconnect")
        ok = await agent.call_tool("transfer_funds", {"amount": 2, "to": "alice"})
        assert not ok.is_error, tool_text(ok)
    explained = daemon_cli("explain", "--name", "crm", "transfer_funds", '{"to": "alice"}', env=daemon.env)
    assert f"decision: allow by grant {grant_id}" in explained
    explained = daemon_cli("explain", "--name", "crm", "transfer_funds", '{"to": "bob"}', env=daemon.env)
    assert "none of the daemon's 1 grant(s)" in explained and grant_id not in explained


def daemon_cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "daemon", *args], env=env, capture_output=True, text=True, timeout=30, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def daemon_sessions(daemon: Daemon) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = json.loads(daemon.console("pending", "--json").stdout)["sessions"]
    return sessions


def test_a_shim_connection_cannot_make_list_or_revoke_grants(daemon: Daemon, tmp_path: Path) -> None:
    """Whatever the agent makes its shim send, the daemon refuses every grant request from it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(p.encode(p.Hello(role=p.ROLE_SHIM, target=["t"], cwd="/", pid=os.getpid())))
        decoder = p.FrameDecoder()
        (welcome,) = _read(sock, decoder, 1)
        assert isinstance(welcome, p.Welcome)
        sock.sendall(p.encode(p.Decide(1, b'{"name":"delete_user","arguments":{"id":1}}')))
        (verdict,) = _read(sock, decoder, 1)
        assert isinstance(verdict, p.Verdict) and verdict.action == p.APPROVE
        requests: list[p.Message] = [
            p.MakeGrant(2, verdict.action_id, "chat"),
            p.MakeGrant(3, verdict.action_id, "once"),
            p.PreviewRule(4, verdict.action_id),
            p.ListGrants(5),
            p.RevokeGrant(6, "G-00000000"),
        ]
        sock.sendall(b"".join(p.encode(m) for m in requests))
        answers = _read(sock, decoder, len(requests))
        assert all(isinstance(a, p.Error) and a.code == p.E_FORBIDDEN for a in answers), answers
        sock.sendall(p.encode(p.Decide(7, b'{"name":"delete_user","arguments":{"id":2}}')))
        (again,) = _read(sock, decoder, 1)
        assert isinstance(again, p.Verdict) and again.action == p.APPROVE
    assert grants(daemon) == []
    assert not [r for r in daemon.audit() if r["event"].startswith("grant_")]


def _read(sock: socket.socket, decoder: p.FrameDecoder, count: int) -> list[p.Message]:
    out: list[p.Message] = []
    while len(out) < count:
        data = sock.recv(1 << 16)
        assert data, "firewalld closed the connection"
        out += decoder.feed(data)
    return out


@pytest.mark.parametrize("mode", MODES)
async def test_agent_bytes_hold_no_code_and_no_grant_id(mode: str, daemon: Daemon, tmp_path: Path) -> None:
    effects, record = tmp_path / "fx", tmp_path / "tap"
    async with connect(fixture_shim(effects), mode=mode, env=daemon.env, record_dir=record) as agent:
        action_id = paused_id(await agent.call_tool("delete_user", {"id": 1}))
        (action,) = daemon.pending()
        daemon.console("grant", action_id, "--scope", "chat")
        grant_id = grant_id_of(daemon, action_id)
        granted = await agent.call_tool("delete_user", {"id": 2})
        assert tool_text(granted) == "deleted user 2"
        await agent.call_tool("delete_user", {"id": 3})
    to_agent = (record / "to_client.bin").read_bytes()
    assert b"deleted user 2" in to_agent
    assert action["code"].encode() not in to_agent
    assert grant_id.encode() not in to_agent and grant_id[2:].encode() not in to_agent


async def test_filesystem_grant_under_a_directory(daemon: Daemon, tmp_path: Path) -> None:
    """``under``: inside the directory as written and as resolved; ``..`` and a symlink out are not."""
    binary = NODE_BIN / "mcp-server-filesystem"
    if not binary.exists():
        pytest.skip("run `make node` for the reference servers")
    root = tmp_path / "root"
    (root / "project").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "project" / "out").symlink_to(root / "other")
    command = shim_command([str(binary), str(root)])
    async with connect(command, mode="legacy", env=daemon.env) as agent:
        first = str(root / "project" / "a.txt")
        action_id = paused_id(await agent.call_tool("write_file", {"path": first, "content": "a"}))
        daemon.console("grant", action_id, "--scope", "args", "--under", f"path={root / 'project'}")
        ok = await agent.call_tool("write_file", {"path": str(root / "project" / "b.txt"), "content": "b"})
        assert not ok.is_error, tool_text(ok)
        for outside in (
            root / "other" / "c.txt",
            f"{root}/project/../other/d.txt",
            root / "project" / "out" / "e.txt",
            f"{root}/project2/f.txt",
            "project/g.txt",
        ):
            paused_id(await agent.call_tool("write_file", {"path": str(outside), "content": "x"}))
    assert (root / "project" / "b.txt").read_text() == "b"
    assert sorted(p.name for p in (root / "other").iterdir()) == []
    assert not (root / "project" / "a.txt").exists()


async def test_refused_grants_say_why_and_leave_the_action_paused(daemon: Daemon, tmp_path: Path) -> None:
    async with connect(fixture_shim(tmp_path / "fx"), mode="legacy", env=daemon.env) as agent:
        action_id = paused_id(await agent.call_tool("transfer_funds", {"amount": 5, "to": "alice"}))
        cases = [
            (("--scope", "always", "--yes"), "bundled policy"),
            (("--scope", "args"), "at least one argument"),
            (("--scope", "args", "--equals", "to=bob"), "own arguments do not match"),
            (("--scope", "args", "--under", "to=relative"), "absolute directory"),
            (("--scope", "args", "--equals", "to=alice", "--minutes", "0"), "1 to 1440 minutes"),
        ]
        for options, why in cases:
            refused = daemon.console("grant", action_id, *options, check=False)
            assert refused.returncode == 1 and why in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr
        missing = daemon.console("grant", "A-00000000", "--scope", "chat", check=False)
        assert missing.returncode == 1 and "no pending action" in missing.stderr
        gone = daemon.console("revoke", "G-00000000", check=False)
        assert gone.returncode == 1 and "no grant" in gone.stderr
        assert [a["action_id"] for a in daemon.pending()] == [action_id]
    assert grants(daemon) == []
