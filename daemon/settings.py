"""firewalld's own settings (not the policy): where it lives and how much it accepts.

Built once in ``main()`` from defaults, ``FIREWALLD_*`` environment variables and the command line,
then passed down. A misspelt variable or flag value fails loudly (``extra="forbid"``).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon import protocol as p


class DaemonSettings(BaseSettings):
    """Settings of one firewalld instance."""

    model_config = SettingsConfigDict(env_prefix="FIREWALLD_", extra="forbid", frozen=True)

    state_dir: str = Field(default_factory=p.default_state_dir)
    """Directory (made 0700) for the database, the code key, the lock and the log."""

    socket_path: str = Field(default_factory=p.default_socket_path)
    """The Unix socket that shims and consoles connect to."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging level."""

    log_format: Literal["text", "json"] = "text"
    """``text``: one readable line per event; ``json``: one JSON object per line (for log shippers)."""

    max_connections: int = Field(default=1024, ge=1)
    """Connections served at once; more are refused with a clear error."""

    max_pending_per_session: int = Field(default=20, ge=1)
    """Actions one session may have waiting for approval at once."""

    max_prompts_per_minute: int = Field(default=12, ge=1)
    """New approval prompts one session may raise per minute; more are refused as a flood."""

    max_failed_codes_per_minute: int = Field(default=5, ge=1)
    """Wrong codes one session may try per minute before code checks pause for that session."""

    max_failed_checks_per_hour: int = Field(default=100, ge=1)
    """Wrong-code checks per hour for the whole user, every chat together: a wrong code typed in a
    chat with N actions waiting counts N. Past it, no code is checked until the hour has moved on
    (deny from the console meanwhile). With 6-digit codes an agent guessing non-stop
    has at most a 1 in 10,000 chance per hour; see the README."""

    max_paused_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    """Bytes of frozen arguments held on disk at once (calls waiting for approval, and approved
    ones for the hour they are remembered). A call whose pause would go past it is denied with a
    reason that says so, never dropped silently; the total in use is in every console listing."""

    audit_max_age_days: float = Field(default=90.0, gt=0)
    """Audit rows older than this are deleted (checked hourly)."""

    audit_max_rows: int = Field(default=2_000_000, ge=1000)
    """The audit log keeps at most this many routine rows (allowed calls, sessions opened and
    closed), the newest (checked hourly). They are pruned first and apart from the security rows,
    so a flood of cheap allowed calls cannot push an approval's rows out."""

    audit_max_security_rows: int = Field(default=5_000_000, ge=1000)
    """The audit log keeps at most this many of every other row (pauses, confirms, wrong codes,
    denials, outcomes, expiries, withdrawals, reissued codes...), the newest (checked hourly)."""

    hello_timeout: float = Field(default=5.0, gt=0)
    """Seconds a new connection has to say hello; then it is closed."""

    max_unauthenticated: int = Field(default=64, ge=1)
    """Connections that have not yet said hello, at once. A new one past this closes the oldest:
    a real shim or console says hello at once, so idle connections cannot lock them out."""

    max_hello_bytes: int = Field(default=1024 * 1024, ge=4096)
    """Largest frame accepted before hello (a hello is small); a larger one is refused from its
    header, before anything is buffered."""

    frame_timeout: float = Field(default=15.0, gt=0)
    """Seconds a frame may take to arrive from its first byte to its last; a frame still
    unfinished then is dropped with its connection (a 90 MB frame takes well under a second)."""

    max_buffered_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Bytes of unfinished frames held for all connections together; a connection whose frame
    would take more is dropped (its shim fails closed and reconnects)."""

    leases: bool = True
    """Hand shims leases: reusable verdicts for tools whose verdict cannot depend on the
    arguments, so an allowed call skips the round trip to the daemon (see the README's "Leases").
    Off: every call is asked about (the benchmark measures both)."""

    lease_ack_timeout: float = Field(default=2.0, gt=0)
    """Seconds a shim has to acknowledge that it dropped its revoked leases; a shim that has not
    is disconnected (which drops them too)."""

    @property
    def db_path(self) -> str:
        """The SQLite file."""
        return os.path.join(self.state_dir, "firewall.db")

    @property
    def legacy_key_path(self) -> str:
        """Where versions before 0.5 kept a key that sealed codes in the database (removed at start)."""
        return os.path.join(self.state_dir, "codes.key")

    @property
    def log_path(self) -> str:
        """Where a detached daemon logs."""
        return os.path.join(self.state_dir, "firewalld.log")

    @property
    def lock_path(self) -> str:
        """The single-instance lock, next to the socket it guards."""
        return self.socket_path + ".lock"
