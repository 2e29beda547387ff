"""A trivial byte relay: the physical floor of any stdio proxy written in Python.

``python bench/relay.py -- CMD ARGS`` starts CMD with pipes and copies bytes both ways with
``os.read``/``os.write``, one thread per direction, without looking at them. When stdin closes it
closes the target's stdin, waits for the target and exits with its status. Stdlib only. It asks
for the same 1 MiB pipe buffers as the shim, so the comparison is between the two programs, not
between two pipe sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

CHUNK = 1 << 20


def _enlarge(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except OSError:
        pass


def _pump(src: int, dst: int) -> None:
    """Copy until end of file on ``src`` or a write error on ``dst``."""
    while True:
        try:
            chunk = os.read(src, CHUNK)
        except OSError:
            return
        if not chunk:
            return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(dst, view) :]
        except OSError:
            return


def main(argv: list[str]) -> int:
    """Relay between our stdio and ``argv``'s; returns its exit status."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: relay.py -- CMD ARGS", file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    to_target, from_target = proc.stdin.fileno(), proc.stdout.fileno()
    _enlarge(to_target)
    _enlarge(from_target)

    def agent_to_target() -> None:
        _pump(0, to_target)
        proc.stdin.close()  # type: ignore[union-attr]

    threading.Thread(target=agent_to_target, daemon=True).start()
    _pump(from_target, 1)
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))
