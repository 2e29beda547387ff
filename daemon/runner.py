"""``firewalld run``: the daemon's start (its directories, log, lock and database), its signals,
the watch on its installed files, and the serve loop until it stops."""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from daemon import protocol as p
from daemon.settings import DaemonSettings

log = logging.getLogger("firewalld")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(settings: DaemonSettings, detach: bool) -> None:
    handler: logging.Handler
    if detach:
        handler = logging.FileHandler(settings.log_path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s firewalld[%(process)d] %(levelname)s %(message)s")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def _take_lock(path: str) -> int | None:
    """The single-instance lock: a held flock, not a pid file (a crash releases it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _remove_legacy_key(path: str) -> None:
    """Older versions sealed codes in the database with a key kept here: with the key gone, what
    they left in the database (and in its free pages) can never give a code back."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("could not remove %s (%s): remove it by hand", path, exc.strerror or exc)
        return
    log.info("removed %s: codes are no longer kept on disk", path)


def _owner_of(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def _loop_options() -> dict[str, object]:
    """uvloop when it is installed (a faster loop for the same asyncio code), else asyncio's own."""
    import importlib.util

    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def _activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us (``LISTEN_FDS``), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return socket.socket(fileno=3)


class _StopSignals:
    """SIGTERM, SIGINT and SIGHUP on Python-level handlers installed once and never removed.

    anyio's signal receiver hands the signals back to their default actions when it closes, so a
    second Ctrl-C while the daemon closed its database printed a ``KeyboardInterrupt`` traceback,
    and a second SIGTERM killed it with status 143. Here the first SIGTERM or SIGINT starts the
    stop and every later one is ignored, until the process has exited 0; SIGHUP re-reads the
    policies. The handlers run on the main thread between bytecodes and only hand work to the loop.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._loop: Any = None
        self._stop: Any = None
        self._reload: Any = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def ignore(self) -> None:
        """From now to the exit, ignore them in the kernel: the interpreter's finalisation puts
        Python-level handlers back to the default actions (a late Ctrl-C would then kill us with
        status 130), but leaves ignored signals ignored."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)

    def attach(self, loop: Any, stop: Any, reload: Any) -> None:
        """Deliver to this event loop from now on (a stop asked for before it ran is delivered now)."""
        self._loop, self._stop, self._reload = loop, stop, reload
        if self.reason is not None:
            loop.call_soon(stop)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            if self.reason is None:
                self._call(self._reload)
            return
        self.request(f"signal {signum} ({signal.Signals(signum).name})")

    def request(self, reason: str) -> None:
        """Stop the daemon, once (as on SIGTERM)."""
        if self.reason is None:
            self.reason = reason
            self._call(self._stop)

    def _call(self, func: Any) -> None:
        if self._loop is not None and func is not None:
            try:
                self._loop.call_soon_threadsafe(func)
            except RuntimeError:  # the loop has closed: the daemon is on its way out anyway
                pass


#: Seconds between two checks that the daemon's installed files are still there.
INSTALL_CHECK = 1.0


def _installed_files() -> list[str]:
    """Files whose disappearance means this daemon was uninstalled (or its environment removed)."""
    import daemon

    package = os.path.dirname(os.path.abspath(daemon.__file__ or "."))
    return [os.path.join(package, "__init__.py"), os.path.join(package, "cli.py"), sys.executable]


async def _watch_install(stop: Any) -> None:
    """Stop the daemon once its installed files are gone: it could not import what it lazily needs,
    and the shim starts the newly installed one (if any) on demand."""
    import anyio

    files = _installed_files()
    while True:
        await anyio.sleep(INSTALL_CHECK)
        # A few stats of local files a second: cheaper than a thread hop.
        missing = next((f for f in files if not os.path.exists(f)), None)  # noqa: ASYNC240
        if missing is not None:
            log.error(
                "stopping: the installed files are gone (%s no longer exists): firewalld was "
                "uninstalled or its environment removed; a shim starts the installed one on demand",
                missing,
            )
            stop("its installed files were removed")
            return


def run_daemon(settings: DaemonSettings, *, detach: bool) -> int:
    """Run firewalld until SIGTERM or SIGINT; returns the exit status."""
    os.umask(0o077)  # the database, key, log and socket are the user's alone
    try:
        p.ensure_private_dir(settings.state_dir)
        p.ensure_private_dir(os.path.dirname(settings.socket_path))
    except PermissionError as exc:
        print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a parent that is a file, a read-only or full disk
        where = exc.filename or settings.state_dir
        print(f"firewalld: cannot create {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _setup_logging(settings, detach)
    lock = _take_lock(settings.lock_path)
    if lock is None:
        if detach:
            return 0
        print(
            f"firewalld: already running for {settings.socket_path} (pid {_owner_of(settings.lock_path)})",
            file=sys.stderr,
        )
        return 1
    import anyio

    from daemon.codes import CodeBook, make_undumpable
    from daemon.pending import PendingActions
    from daemon.server import Firewalld
    from daemon.store import Store, StoreBusy

    try:
        store = Store(settings.db_path)
    except StoreBusy as exc:  # a second daemon on another socket, same HOME
        if detach:
            log.error("%s", exc)  # the shim that started it reports the daemon as not answering
        else:
            print(f"firewalld: {exc}", file=sys.stderr)
        return 1
    make_undumpable()  # the codes are in this process's memory, and only there
    _remove_legacy_key(settings.legacy_key_path)
    pending = PendingActions(
        store,
        CodeBook(),
        max_failures_per_minute=settings.max_failed_codes_per_minute,
        max_checks_per_hour=settings.max_failed_checks_per_hour,
    )
    reissued = pending.reissue()
    if reissued:
        log.info("%d open action(s) got new codes (codes do not survive a restart)", len(reissued))
    app = Firewalld(settings, store, pending)
    activated = _activated_socket()

    async def serve() -> None:
        import asyncio

        from anyio.abc import SocketListener

        stopping = anyio.Event()
        stops.attach(asyncio.get_running_loop(), stopping.set, app.reload)
        from daemon import failpoints

        if failpoints.armed("sigusr2.verdicts_changed"):  # a test's stand-in for a grant or pin change
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR2, app.verdicts_changed, "a grant or pin changed (test trigger)"
            )
        if activated is not None:
            listener = await SocketListener.from_socket(activated)
        else:
            # We hold the lock, so a socket file left here is stale: no live daemon owns it.
            listener = await anyio.create_unix_listener(settings.socket_path, mode=0o600)
        async with anyio.create_task_group() as tg:
            await tg.start(app.serve, listener)
            log.info("listening on %s (pid %d)", settings.socket_path, os.getpid())
            tg.start_soon(_watch_install, stops.request, name="install watch")
            await stopping.wait()
            log.info("stopping: %s", stops.reason)
            await listener.aclose()  # no new connections; answer what is being answered
            await app.drain(2.0)
            tg.cancel_scope.cancel()

    stops = _StopSignals()
    stops.install()  # from here to the exit: a second SIGTERM or SIGINT while stopping is ignored
    # Modules and settings are loaded and live as long as the daemon: out of the collector's
    # sight, a full collection (7 ms over these 35,000 objects, every decision waiting behind it)
    # never walks them again.
    gc.freeze()
    try:
        anyio.run(serve, backend_options=_loop_options())
    except OSError as exc:
        print(f"firewalld: cannot listen on {settings.socket_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
        if activated is None:
            try:
                os.unlink(settings.socket_path)
            except OSError:
                pass
        os.close(lock)
        stops.ignore()
    return 0
