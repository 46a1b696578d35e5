"""The broker's configuration: one typed dataclass, read from TOML, overridden by flags.

Each field's docstring (the string right below it) is its documentation; the
``broker serve`` flags and the table in docs/broker.md are generated from them.
A TOML file holds the same keys at top level or under ``[broker]``; an optional
``[embedded_coordinator]`` table holds CoordinatorConfig keys for the coordinator
that ``broker serve`` runs when no ``coordinator`` address is given.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from client import config_schema
from client.config_schema import ConfigError as ConfigError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

FLUSH_POLICIES = ("group_commit", "interval")
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Settings of one broker."""

    broker_id: int = 0
    """Id of this broker, unique in the cluster (0..2**31-1)."""

    host: str = "127.0.0.1"
    """Address to listen on for clients."""

    port: int = 9092
    """TCP port to listen on (0 picks a free port; the chosen one is printed)."""

    advertised_host: str = ""
    """Host name clients are told to connect to; empty means ``host`` (this machine's name
    when ``host`` is a wildcard such as 0.0.0.0)."""

    rack: str = ""
    """Rack (failure domain) of this broker; replicas are spread across racks."""

    data_dir: Path = Path("data/broker")
    """Directory holding one sub-directory per partition (and the embedded coordinator's)."""

    coordinator: str = ""
    """Coordinator address(es) HOST:PORT[,HOST:PORT...]; empty runs one embedded in the broker."""

    embedded_coordinator_port: int = 2181
    """Port of the embedded coordinator (0 picks a free one); used when ``coordinator`` is empty."""

    session_timeout_ms: int = 10_000
    """Coordinator session timeout: how long a silent broker keeps its registration."""

    num_partitions: int = 1
    """Partitions of a topic created without an explicit count (and of auto-created topics)."""

    default_replication_factor: int = 1
    """Replicas of a topic created without an explicit replication factor."""

    auto_create_topics: bool = True
    """Create a topic when a client asks for metadata of one that does not exist."""

    delete_topic_enable: bool = True
    """Allow DeleteTopics; when false it answers INVALID_REQUEST."""

    cleanup_policy: str = "delete"
    """Default cleanup.policy of topics: delete, compact or compact,delete."""

    retention_ms: int = 7 * DAY_MS
    """Default retention.ms: delete segments whose newest record is older; -1 keeps forever."""

    retention_bytes: int = -1
    """Default retention.bytes: delete the oldest segments while a partition is larger; -1 = off."""

    segment_bytes: int = GIB
    """Default segment.bytes: roll a partition's active segment at this size."""

    segment_ms: int = 7 * DAY_MS
    """Default segment.ms: roll a partition's active segment once it is this old."""

    max_message_bytes: int = MIB + 12
    """Default max.message.bytes: the largest record batch accepted (MESSAGE_TOO_LARGE above)."""

    min_insync_replicas: int = 1
    """Default min.insync.replicas: acks=all produce needs at least this many in-sync replicas."""

    max_request_bytes: int = 64 * MIB
    """Largest request frame; a bigger one is answered FRAME_TOO_LARGE and the connection closed."""

    fetch_max_bytes: int = 50 * MIB
    """Upper bound on one fetch response's record bytes, whatever the client asks for."""

    flush_policy: str = "group_commit"
    """group_commit: a committer fsyncs every dirty partition continuously, acks=all waits for it
    and consumers see only fsynced records; interval: fsync every flush_interval_ms and records
    are visible as soon as they are written (durability is left to replication)."""

    flush_interval_ms: int = 1000
    """fsync period of the interval flush policy."""

    log_maintenance_interval_ms: int = 300_000
    """How often retention (and compaction of compacted topics) runs over every partition."""

    producer_id_block_size: int = 1000
    """Producer ids this broker reserves from the coordinator at a time."""

    max_open_files: int = 1000
    """Segment files kept open at once, across every partition."""

    offsets_topic_num_partitions: int = 16
    """Partitions of the internal ``__consumer_offsets`` topic, used when it is created: the
    coordinator of group g leads partition ``abs(java_hash(g)) % N`` of it."""

    offsets_topic_replication_factor: int = 3
    """Replication factor of ``__consumer_offsets`` when it is created (capped at the number
    of live brokers)."""

    offsets_retention_ms: int = 7 * DAY_MS
    """Committed offsets of a group without members, or of a topic the group no longer
    subscribes to, are deleted this long after they were committed."""

    offsets_retention_check_interval_ms: int = 600_000
    """How often expired offsets, and then empty groups without offsets, are deleted."""

    offset_metadata_max_bytes: int = 4096
    """Longest metadata string of a committed offset (OFFSET_METADATA_TOO_LARGE above)."""

    group_session_timeout_ms: int = 10_000
    """A consumer-group member that sends no heartbeat for this long is removed from its
    group and its partitions are reassigned."""

    group_heartbeat_interval_ms: int = 3_000
    """How often consumer-group members are told to heartbeat (less than the session timeout)."""

    group_max_size: int = 2**31 - 1
    """Most members a consumer group may have (GROUP_MAX_SIZE_REACHED beyond)."""

    replica_lag_time_max_ms: int = 10_000
    """A follower that has not caught up with its leader's log end for this long leaves the
    ISR (it rejoins once caught up)."""

    replica_fetch_wait_max_ms: int = 500
    """Longest a follower's fetch waits at the leader for new data (less than
    replica_lag_time_max_ms)."""

    replica_fetch_max_bytes: int = MIB
    """Record bytes a follower asks for per partition and fetch (the first batch comes whole)."""

    replica_fetch_response_max_bytes: int = 10 * MIB
    """Record bytes a follower asks for per fetch, over all partitions."""

    replica_fetch_backoff_ms: int = 200
    """Pause before a follower fetches again after an error or a lost connection."""

    replica_high_watermark_checkpoint_interval_ms: int = 5_000
    """How often every hosted partition's high watermark is written to
    replication-offset-checkpoint (also at shutdown)."""

    controlled_shutdown_enable: bool = True
    """On SIGTERM, first ask the controller to move this broker's leaderships away and drop it
    from every ISR, so that clients see no errors."""

    controlled_shutdown_timeout_ms: int = 30_000
    """Longest a controlled shutdown waits for its leaderships to move before stopping anyway."""

    auto_leader_rebalance_enable: bool = True
    """The controller moves leadership back to each partition's preferred replica (the first of
    its assignment) once it is in sync again."""

    leader_imbalance_check_interval_ms: int = 30_000
    """How often the controller looks for partitions not led by their preferred replica."""

    log_level: str = "INFO"
    """Python logging level of the broker."""

    log_json: bool = False
    """Log JSON lines (ts, level, logger, message and any extra fields) instead of text."""

    metrics_port: int = -1
    """HTTP port serving /metrics (Prometheus) and /health at ``host``; 0 picks a free port
    (printed), -1 turns the endpoint off. It also serves the embedded coordinator's metrics."""

    def __post_init__(self) -> None:
        if not 0 <= self.broker_id <= 2**31 - 1:
            raise ConfigError(f"broker_id must be 0..2147483647, got {self.broker_id}")
        for name in ("port", "embedded_coordinator_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be 0..65535, got {getattr(self, name)}")
        if not -1 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be -1 (off) or 0..65535, got {self.metrics_port}")
        for name in (
            "session_timeout_ms",
            "num_partitions",
            "default_replication_factor",
            "segment_bytes",
            "segment_ms",
            "min_insync_replicas",
            "max_request_bytes",
            "fetch_max_bytes",
            "flush_interval_ms",
            "log_maintenance_interval_ms",
            "producer_id_block_size",
            "max_open_files",
            "offsets_topic_num_partitions",
            "offsets_topic_replication_factor",
            "offsets_retention_ms",
            "offsets_retention_check_interval_ms",
            "offset_metadata_max_bytes",
            "group_session_timeout_ms",
            "group_heartbeat_interval_ms",
            "group_max_size",
            "replica_lag_time_max_ms",
            "replica_fetch_wait_max_ms",
            "replica_fetch_max_bytes",
            "replica_fetch_response_max_bytes",
            "replica_fetch_backoff_ms",
            "replica_high_watermark_checkpoint_interval_ms",
            "controlled_shutdown_timeout_ms",
            "leader_imbalance_check_interval_ms",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("retention_ms", "retention_bytes"):
            if getattr(self, name) < -1:
                raise ConfigError(
                    f"{name} must be -1 (no limit) or >= 0, got {getattr(self, name)}"
                )
        if self.group_heartbeat_interval_ms >= self.group_session_timeout_ms:
            raise ConfigError(
                "group_heartbeat_interval_ms must be less than group_session_timeout_ms, got "
                f"{self.group_heartbeat_interval_ms} >= {self.group_session_timeout_ms}"
            )
        if self.replica_fetch_wait_max_ms >= self.replica_lag_time_max_ms:
            raise ConfigError(
                "replica_fetch_wait_max_ms must be less than replica_lag_time_max_ms, got "
                f"{self.replica_fetch_wait_max_ms} >= {self.replica_lag_time_max_ms}"
            )
        if self.max_message_bytes < 61:
            raise ConfigError(f"max_message_bytes must be >= 61, got {self.max_message_bytes}")
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ConfigError(
                f"cleanup_policy must be one of {', '.join(CLEANUP_POLICIES)}, "
                f"got {self.cleanup_policy!r}"
            )
        if self.flush_policy not in FLUSH_POLICIES:
            raise ConfigError(
                f"flush_policy must be one of {', '.join(FLUSH_POLICIES)}, "
                f"got {self.flush_policy!r}"
            )
        if self.coordinator:
            parse_hosts(self.coordinator)

    @property
    def advertised(self) -> str:
        """The host name put in this broker's registration."""
        if self.advertised_host:
            return self.advertised_host
        if self.host in ("", "0.0.0.0", "::"):
            return socket.getfqdn()
        return self.host

    @property
    def embedded_coordinator_dir(self) -> Path:
        return self.data_dir / "coordinator"

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, source: str = "config") -> BrokerConfig:
        """Build from plain values (TOML types); unknown keys and wrong types are errors."""
        return config_schema.from_mapping(cls, values, source=source)

    def with_overrides(self, overrides: dict[str, Any]) -> BrokerConfig:
        """A copy with the given (already typed) fields replaced; None values are ignored."""
        return config_schema.with_overrides(self, overrides)


def load_toml(path: Path) -> tuple[BrokerConfig, dict[str, Any]]:
    """Read a TOML file: the broker config and the ``[embedded_coordinator]`` table."""
    data = config_schema.read_toml(path)
    embedded = data.pop("embedded_coordinator", {})
    if not isinstance(embedded, dict):
        raise ConfigError(f"{path}: embedded_coordinator must be a table")
    section = data.get("broker")
    if isinstance(section, dict):
        if len(data) != 1:
            others = sorted(k for k in data if k != "broker")
            raise ConfigError(f"{path}: keys {', '.join(others)} outside the [broker] table")
        data = section
    return BrokerConfig.from_mapping(data, source=str(path)), embedded


def parse_hosts(value: str) -> list[tuple[str, int]]:
    """``HOST:PORT[,HOST:PORT...]`` -> [(host, port)]; raises ConfigError."""
    out: list[tuple[str, int]] = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"bad address {item.strip()!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    return out


def field_type(name: str) -> type:
    """The Python type of a config field."""
    return config_schema.field_type(BrokerConfig, name)


def field_docs() -> dict[str, str]:
    """Field name -> its docstring (one paragraph), read from this module's source."""
    return config_schema.field_docs(BrokerConfig)


def defaults() -> dict[str, Any]:
    """Field name -> default value."""
    return config_schema.defaults(BrokerConfig)


def _render_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def markdown_table() -> str:
    """The config reference table of docs/broker.md, generated from the field docstrings."""
    docs = field_docs()
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in fields(BrokerConfig):
        meaning = docs.get(f.name, "").replace("``", "`").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{_render_default(f.default)}` | {meaning} |")
    return "\n".join(rows)
