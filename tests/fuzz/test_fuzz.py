"""The fuzz run: generated agent lines, target lines and daemon answers, in any order, through the Firewall.

No crash, no hang, and nothing reaches the target that was not judged (see ``helpers.fuzzing``). The test
suite runs a fixed sample of ``FUZZ_LINES`` agent lines (3,000 by default, derandomised so a failure
replays); ``make fuzz`` runs 100,000 or more with fresh randomness:

    FUZZ_LINES=100000 .venv/bin/pytest tests/fuzz/test_fuzz.py -q -s

Hypothesis shrinks and prints a failing example; once fixed, add its line to ``tests/fuzz/corpus/``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.fuzz_lines import Context, agent_line, load_corpus, server_line
from helpers.fuzzing import Session, continuation_tokens

FUZZ_LINES = int(os.environ.get("FUZZ_LINES", "3000"))
FULL_RUN = "FUZZ_LINES" in os.environ
CORPUS = load_corpus()


@pytest.fixture(autouse=True)
def quiet_shim() -> Iterator[None]:
    """The shim logs every refusal; a fuzz run refuses thousands of lines on purpose."""
    shim_log = logging.getLogger("mcp-action-firewall")
    level = shim_log.level
    shim_log.setLevel(logging.CRITICAL)
    yield
    shim_log.setLevel(level)


@dataclass
class Tally:
    """What a run did, for the summary line."""

    examples: int = 0
    lines: int = 0
    forwarded: int = 0
    refused: int = 0


def play(data: st.DataObject, tally: Tally) -> None:
    """One session: a random schedule of agent lines, target lines and daemon answers; then the checks."""
    session, ctx = Session(), Context()
    for _ in range(data.draw(st.integers(10, 80), label="steps")):
        kind = data.draw(st.sampled_from(["agent"] * 6 + ["server"] * 2 + ["daemon"] * 2))
        if kind == "agent":
            before = len(session.client.lines)
            session.agent(data.draw(agent_line(ctx, CORPUS)))
            tally.refused += len(session.client.lines) > before
        elif kind == "server":
            session.server(data.draw(server_line(ctx)))
        elif session.daemon.pending:
            index = data.draw(st.integers(0, len(session.daemon.pending) - 1))
            session.daemon.answer(index, data.draw(st.sampled_from(["policy"] * 8 + ["none", "error"])))
            session.check_target_lines()
        _learn(session, ctx)
    session.finish()
    tally.examples += 1
    tally.lines += session.lines_fed
    tally.forwarded += len(session.target.lines)


def _learn(session: Session, ctx: Context) -> None:
    """Let the next lines refer to what happened: codes shown, tokens handed out, ids forwarded."""
    ctx.codes = list(session.daemon.codes)
    ctx.tokens = continuation_tokens(session)
    import json

    for line in session.target.lines[len(ctx.forwarded) :]:
        try:
            ctx.forwarded.append(json.loads(line).get("id"))
        except (ValueError, AttributeError):
            ctx.forwarded.append(None)


def test_fuzz_nothing_unjudged_reaches_the_target() -> None:
    """At least FUZZ_LINES generated lines: no exception escapes, every invariant holds after every step."""
    tally = Tally()
    started = time.monotonic()

    @settings(
        max_examples=max(10, FUZZ_LINES // 20),
        deadline=None,
        derandomize=not FULL_RUN,
        database=None if not FULL_RUN else settings.default.database,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        play(data, tally)

    while tally.lines < FUZZ_LINES:
        run()
        if not FULL_RUN:
            break
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: {tally.lines} agent lines in {tally.examples} sessions, {elapsed:.1f} s; "
        f"{tally.forwarded} lines reached the target, every one judged or untouched; "
        f"{tally.refused} answered by the shim itself"
    )
    assert tally.lines >= FUZZ_LINES


def test_corpus_lines_one_by_one() -> None:
    """Every seed line, alone in a fresh session and then after an honest handshake, keeps the invariants."""
    handshake = b'{"jsonrpc":"2.0","id":"h","method":"initialize","params":{"protocolVersion":"2025-06-18"}}'
    for line in CORPUS:
        for prelude in ([], [handshake]):
            session = Session()
            for before in prelude:
                session.agent(before)
            session.agent(line)
            session.daemon.answer_all()
            session.check_target_lines()
            session.finish()
