"""The coordinator server's configuration: one typed dataclass, read from TOML.

Each field's docstring (the string right below it) is its documentation; the
operator docs and the ``coordinator serve`` flags are generated from them.
A TOML file holds the same keys at top level (or under ``[coordinator]``);
command-line flags override the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import config_schema
from client.config_schema import ConfigError

__all__ = ["ConfigError", "CoordinatorConfig", "defaults", "field_docs", "field_type"]


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """Settings of one coordinator server."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = 2181
    """TCP port to listen on (0 picks a free port; the chosen one is printed)."""

    data_dir: Path = Path("data/coordinator")
    """Directory for the transaction log (log/) and snapshots (snapshot/)."""

    min_session_timeout_ms: int = 2000
    """Smallest session timeout granted; shorter proposals are raised to it."""

    max_session_timeout_ms: int = 60000
    """Largest session timeout granted; longer proposals are lowered to it."""

    tick_ms: int = 100
    """Period of the session-expiry and container/TTL-reaping tick."""

    max_data_bytes: int = 1024 * 1024
    """Largest znode data accepted by create and set (DATA_TOO_LARGE above it)."""

    max_frame_bytes: int = 64 * 1024 * 1024
    """Largest request frame; a bigger one gets FRAME_TOO_LARGE and the connection closes."""

    max_outstanding_requests: int = 10000
    """Requests received but not yet answered, server-wide, before TOO_MANY_REQUESTS."""

    snapshot_every: int = 100_000
    """Take a snapshot after this many transactions (and always at clean shutdown)."""

    snapshot_keep: int = 3
    """Snapshots kept on disk; the log before the oldest kept one is purged."""

    log_file_bytes: int = 64 * 1024 * 1024
    """Size at which the transaction log starts a new file."""

    fsync: bool = True
    """fsync the transaction log before acknowledging writes (off only for throwaway data)."""

    inline_fsync_max_txns: int = 4
    """Group commits of up to this many txns fsync inline, larger ones in a thread (0: always)."""

    log_level: str = "INFO"
    """Python logging level of the server."""

    log_json: bool = False
    """Log JSON lines (ts, level, logger, message and any extra fields) instead of text."""

    metrics_port: int = -1
    """HTTP port of /metrics (Prometheus) and /health at ``host``; 0: a free one, -1: off."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if not -1 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be -1 (off) or 0..65535, got {self.metrics_port}")
        if not 0 < self.min_session_timeout_ms <= self.max_session_timeout_ms:
            raise ConfigError("need 0 < min_session_timeout_ms <= max_session_timeout_ms")
        for name in (
            "tick_ms",
            "max_data_bytes",
            "max_frame_bytes",
            "max_outstanding_requests",
            "snapshot_every",
            "snapshot_keep",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if self.inline_fsync_max_txns < 0:
            raise ConfigError("inline_fsync_max_txns must not be negative")
        if self.log_file_bytes < 1024:
            raise ConfigError(f"log_file_bytes must be at least 1024, got {self.log_file_bytes}")

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshot"

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, source: str = "config") -> CoordinatorConfig:
        """Build from plain values (TOML types); unknown keys and wrong types are errors."""
        return config_schema.from_mapping(cls, values, source=source)

    @classmethod
    def from_toml(cls, path: Path) -> CoordinatorConfig:
        """Read a TOML file; its keys may sit at top level or under ``[coordinator]``."""
        data = config_schema.read_toml(path)
        section = data.get("coordinator")
        if isinstance(section, dict) and len(data) == 1:
            data = section
        return cls.from_mapping(data, source=str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> CoordinatorConfig:
        """A copy with the given (already typed) fields replaced; None values are ignored."""
        return config_schema.with_overrides(self, overrides)


def field_type(name: str) -> type:
    """The Python type of a config field."""
    return config_schema.field_type(CoordinatorConfig, name)


def field_docs() -> dict[str, str]:
    """Field name -> its docstring, read from this module's source."""
    return config_schema.field_docs(CoordinatorConfig)


def defaults() -> dict[str, Any]:
    """Field name -> default value."""
    return config_schema.defaults(CoordinatorConfig)
