"""``make demo`` / ``python -m console.demo``: the whole firewall on one screen, no set-up, no network.

It starts a private firewalld, wraps a pretend payments server in the shim, and plays the agent:
a safe call passes, a refund is paused (the agent is told to ask for a code, and does not get it),
the console shows the code and the frozen arguments, the "user" types the code, the refund runs
with exactly those arguments, and a second dangerous call is denied from the console.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

from console.client import ConsoleClient
from console.model import visible

BOLD, DIM, GREEN, RED, YELLOW, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[33m", "\033[0m")
    if sys.stdout.isatty()
    else ("",) * 6
)


def say(who: str, text: str, colour: str = "") -> None:
    """Print one step of the story: its text through :func:`~console.model.visible`, like every
    text the console prints (only the demo's own colours are escapes)."""
    lines = text.splitlines() or [""]
    print(f"{BOLD}{who:>9}{RESET} {colour}{visible(lines[0])}{RESET}")
    for line in lines[1:]:
        print(f"{'':>9} {colour}{visible(line)}{RESET}")


class Agent:
    """Plays the MCP client: spawns the shim and speaks newline-delimited JSON-RPC to it."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.received = b""
        self._next = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and wait for its response."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._next += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next, "method": method}
        if params is not None:
            msg["params"] = params
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the shim exited")
            self.received += line
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == self._next:
                return reply

    def call(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Call a tool; returns (is_error, text)."""
        result = self.request("tools/call", {"name": tool, "arguments": arguments})["result"]
        return bool(result.get("isError")), "".join(c.get("text", "") for c in result["content"])

    def close(self) -> int:
        """Close stdin, as clients do, and wait for the shim."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        return code


def main() -> int:
    """Run the demo; returns 0 when every step behaved."""
    with tempfile.TemporaryDirectory(prefix="fw-demo-") as tmp:
        sock = os.path.join(tmp, "firewalld.sock")
        env = {
            k: v for k, v in os.environ.items() if k in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
        }
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon",
                "run",
                "--socket",
                sock,
                "--state-dir",
                os.path.join(tmp, "state"),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            return _story(sock, env, daemon)
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)


def _connect(sock: str, daemon: subprocess.Popen[bytes]) -> ConsoleClient:
    deadline = time.monotonic() + 15
    while True:
        client = ConsoleClient(sock, timeout=5.0)
        try:
            client.connect()
            return client
        except Exception:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _story(sock: str, env: dict[str, str], daemon: subprocess.Popen[bytes]) -> int:
    console = _connect(sock, daemon)
    server = [sys.executable, "-m", "console.example_server"]
    shim = [sys.executable, "-m", "shim", "--socket", sock, "--no-autostart", "--", *server]
    print(f"{DIM}firewalld on {sock}; agent -> mcp-action-firewall -> demo payments server{RESET}\n")
    agent = Agent(shim, env)
    agent.request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "demo-agent", "version": "1.0"},
        },
    )
    tools = [t["name"] for t in agent.request("tools/list")["result"]["tools"]]
    say("agent", f"tools/list -> {', '.join(tools)}")
    ok = True

    is_error, text = agent.call("get_balance", {})
    say("agent", f"get_balance -> {text}", GREEN)
    ok &= not is_error

    is_error, text = agent.call("refund_payment", {"charge": "ch_42", "amount": 120})
    paused = json.loads(text)
    say("agent", f"refund_payment -> isError={is_error}, {paused['status']} ({paused['action_id']})", YELLOW)
    say("", textwrap.fill(paused["instruction"], 90), DIM)
    (action,) = console.pending().actions
    say("console", f"{action['action_id']}  {action['tool']}  arguments {action['arguments_json']}")
    say("console", f"approval code: {action['code']}   (rule: {action['rule']})", BOLD)
    leaked = action["code"].encode() in agent.received
    say(
        "check",
        f"the code is in {'SOME' if leaked else 'none'} of the {len(agent.received)} bytes the agent got",
        RED if leaked else GREEN,
    )
    ok &= is_error and not leaked

    say("user", f'types "{action["code"]}" into the chat')
    is_error, text = agent.call("firewall_confirm", {"otp": action["code"], "amount": 99999})
    say("agent", f"firewall_confirm -> {text}", RED if is_error else GREEN)
    say("", "(the agent's extra amount=99999 was ignored: the frozen arguments ran)", DIM)
    ok &= not is_error and "refunded 120 EUR on charge ch_42" in text

    is_error, text = agent.call("delete_customer", {"id": "cus_7"})
    action_id = json.loads(text)["action_id"]
    (action,) = console.pending().actions
    say("agent", f"delete_customer -> paused ({action_id})", YELLOW)
    say("console", console.deny(action_id), RED)
    is_error, text = agent.call("firewall_confirm", {"otp": action["code"]})
    say("agent", f"firewall_confirm -> {text}", RED)
    ok &= is_error and "denied" in text

    agent.close()
    print(f"\n{DIM}audit log (newest first):{RESET}")
    for row in console.log(limit=12):
        what = " ".join(str(x) for x in (row["tool"], row["action_id"], row["decision"]) if x)
        print(visible(f"  {row['event']:14} {what}"))
    console.close()
    print(f"\n{GREEN if ok else RED}{'demo OK' if ok else 'demo FAILED'}{RESET}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
