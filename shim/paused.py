"""The agent's instructions for a paused call (see :mod:`shim.confirm`)."""

from __future__ import annotations

import json
from typing import Any

from daemon import protocol as p
from shim.listing import CONFIRM_TOOL

#: Past this size a paused call's arguments are shown to the agent as a preview only.
_PREVIEW = 4096


def paused_text(name: str, params_json: bytes, verdict: p.Verdict) -> str:
    """The agent's instructions for a paused call. It never contains the code: the daemon never
    sends a code to a shim, so there is nothing here that could leak it."""
    arguments: Any
    if len(params_json) <= _PREVIEW:
        shown = json.loads(params_json)
        arguments = shown.get("arguments", {})
        if "inputResponses" in shown and isinstance(arguments, dict):
            # As the console shows it, and as the policy judged it: one more argument.
            arguments = {**arguments, "inputResponses": shown["inputResponses"]}
    else:
        arguments = f"({len(params_json)} bytes; see the firewall console for the full arguments)"
    minutes = max(1, round((verdict.expires_at - _now()) / 60)) if verdict.expires_at else 5
    payload = {
        "status": "PAUSED_FOR_APPROVAL",
        "action_id": verdict.action_id,
        "message": (
            f"The call to '{name}' was paused by the MCP Action Firewall and has NOT run: {verdict.reason}"
        ),
        "action": {"tool": name, "arguments": arguments},
        "instruction": (
            f"Ask the user to approve it. Show them the tool and arguments above, and ask them to read "
            f"the approval code for action {verdict.action_id} in their firewall console (the "
            f"`firewall-console` command) and type it here. Then call the `{CONFIRM_TOOL}` tool with "
            '{"otp": "<the code>"}. Never guess a code: wrong codes are counted and lock the action. '
            f"The code expires in about {minutes} minute(s). If the user declines, do not retry."
        ),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _now() -> float:
    import time

    return time.time()
