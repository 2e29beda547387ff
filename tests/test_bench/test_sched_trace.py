"""bench.sched reads the kernel's scheduler trace into per-call timelines (parsing only: no root)."""

from __future__ import annotations

from bench.sched import parse, report

NAMES = {10: "client", 20: "shim", 30: "daemon", 40: "target"}


def ev(pid: int, cpu: int, us: int, event: str, rest: str) -> str:
    comm = f"swapper/{cpu}" if pid == 0 else "python"
    return f"  {comm}-{pid:<6} [{cpu:03d}] d..2. 100.{us:06d}: {event}: {rest}"


def switch(cpu: int, us: int, prev: int, nxt: int) -> str:
    return ev(
        prev,
        cpu,
        us,
        "sched_switch",
        f"prev_comm=x prev_pid={prev} prev_prio=120 prev_state=S ==> "
        f"next_comm=x next_pid={nxt} next_prio=120",
    )


def wake(waker: int, cpu: int, us: int, woken: int, to: int) -> str:
    return ev(waker, cpu, us, "sched_waking", f"comm=python pid={woken} prio=120 target_cpu={to:03d}")


def mark(us: int, text: str) -> str:
    return ev(10, 0, us, "tracing_mark_write", text)


# One call: the client wakes the shim on cpu1 and sleeps; the shim asks the daemon (same cpu),
# the daemon answers, the shim wakes the target on cpu0, which answers, and the client is woken.
CALL = [
    mark(0, "CALL"),
    wake(10, 0, 2, 20, 1),
    switch(0, 5, 10, 0),
    switch(1, 20, 0, 20),
    wake(20, 1, 40, 30, 1),
    switch(1, 42, 20, 30),
    wake(30, 1, 90, 20, 1),
    switch(1, 95, 30, 20),
    wake(20, 1, 110, 40, 0),
    switch(1, 115, 20, 0),
    switch(0, 130, 0, 40),
    wake(40, 0, 140, 20, 1),
    switch(0, 145, 40, 0),
    switch(1, 160, 0, 20),
    wake(20, 1, 170, 10, 0),
    switch(1, 175, 20, 0),
    switch(0, 190, 0, 10),
    mark(200, "DONE"),
]


def test_a_call_is_timed_per_process_and_per_wake() -> None:
    calls = parse("\n".join(["# tracer: nop", *CALL]), NAMES)
    assert len(calls) == 1
    call = calls[0]
    assert call.end == 200
    # On a CPU within the call: the client 0-5 and 190-200; the shim 20-42, 95-115 and 160-175;
    # the daemon 42-95; the target 130-145.
    assert call.running["client"] == 15
    assert call.running["shim"] == 57
    assert call.running["daemon"] == 53
    assert call.running["target"] == 15
    # From being woken to running: the shim three times (18, 5, 20), the daemon 2, the target 20,
    # the client 20.
    assert sorted(w for w in call.wakes if w[0] == "shim") == [("shim", 5), ("shim", 18), ("shim", 20)]
    assert ("daemon", 2) in call.wakes and ("target", 20) in call.wakes and ("client", 20) in call.wakes


def test_the_report_shows_the_call_at_the_quantile_and_the_totals() -> None:
    text = report(parse("\n".join(CALL + [line.replace("100.", "101.") for line in CALL]), NAMES))
    assert text.startswith("2 calls traced; call at q=0.5: 200 µs")
    assert "shim wakes daemon (to cpu1)" in text
    assert "cpu1: daemon -> shim" in text
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[-4:]}
    assert lines["daemon"][0] == "53.0"
    assert lines["shim"][:2] == ["57.0", "18.0"]  # on a CPU; median wait when woken
    assert report([]) == "no complete call was traced"
