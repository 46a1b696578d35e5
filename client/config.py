"""Typed configuration of the producer, the consumer and the admin client.

Names follow Kafka's client configs with dots turned into underscores
(``linger.ms`` -> ``linger_ms``). Every value is checked when the config is
built, so a bad setting raises ``ValueError``/``TypeError`` before anything is
sent. The clients accept these fields as keyword arguments:
``Producer("host:9092", acks=1, linger_ms=2)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from client.records import (
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_ZLIB,
    COMPRESSION_ZSTD,
)
from client.serializers import Deserializer, Serializer
from client.wire import DEFAULT_MAX_FRAME

COMPRESSION_CODECS: dict[str, int] = {
    "none": COMPRESSION_NONE,
    "zlib": COMPRESSION_ZLIB,
    "lz4": COMPRESSION_LZ4,
    "zstd": COMPRESSION_ZSTD,
}

AUTO_OFFSET_RESET = ("earliest", "latest", "none")

# A custom partitioner: (topic, serialized key or None, number of partitions) -> partition.
Partitioner = Callable[[str, bytes | None, int], int]


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_number(name: str, value: Any, lo: float) -> None:
    if type(value) not in (int, float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")


def parse_bootstrap(servers: str | list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """``"host:port[,host:port]"`` (or a list of ``host:port``) as (host, port) pairs."""
    if isinstance(servers, str):
        items = [s.strip() for s in servers.split(",")]
    elif isinstance(servers, list | tuple):
        items = [str(s).strip() for s in servers]
    else:
        raise TypeError(
            f"bootstrap servers must be a 'host:port[,host:port]' string, got {servers!r}"
        )
    out: list[tuple[str, int]] = []
    for item in items:
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad bootstrap address {item!r}; expected host:port")
        out.append((host, int(port_text)))
    if not out:
        raise ValueError("no bootstrap servers given")
    return out


@dataclass(slots=True)
class CommonConfig:
    """Settings every client shares."""

    #: Sent to the broker for its logs and metrics.
    client_id: str = "rivulet"
    #: How long to wait for a broker's answer before giving up on the connection.
    request_timeout_ms: int = 30_000
    #: First pause before a retry; doubles per attempt up to ``retry_backoff_max_ms``.
    retry_backoff_ms: int = 100
    #: Longest pause between retries.
    retry_backoff_max_ms: int = 1_000
    #: Refresh cluster metadata at least this often even without errors.
    metadata_max_age_ms: int = 300_000
    #: Time limit for opening a TCP connection to a broker.
    connect_timeout_ms: int = 10_000
    #: Largest frame accepted from a broker.
    max_frame_bytes: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str):
            raise TypeError(f"client_id must be a str, got {self.client_id!r}")
        _check_int("request_timeout_ms", self.request_timeout_ms, 1)
        _check_int("retry_backoff_ms", self.retry_backoff_ms, 0)
        _check_int("retry_backoff_max_ms", self.retry_backoff_max_ms, 0)
        _check_int("metadata_max_age_ms", self.metadata_max_age_ms, 0)
        _check_int("connect_timeout_ms", self.connect_timeout_ms, 1)
        _check_int("max_frame_bytes", self.max_frame_bytes, 1024)

    @classmethod
    def names(cls) -> set[str]:
        """The names of the settings of this config class."""
        return {f.name for f in fields(cls)}


@dataclass(slots=True)
class ProducerConfig(CommonConfig):
    """Producer settings (Kafka's producer configs, underscored)."""

    #: 0 (fire and forget), 1 (leader wrote it) or "all"/-1 (every in-sync replica).
    acks: int | str = "all"
    #: Batch body compression: "none", "zlib", "lz4" or "zstd" (the last two need extras).
    compression: str = "none"
    #: A partition's batch is sent once its records reach this many bytes.
    batch_size: int = 256 * 1024
    #: How long a batch may wait for more records before it is sent anyway.
    linger_ms: float = 5.0
    #: Produce requests in flight per broker connection (<= 5 keeps order with retries).
    max_in_flight: int = 5
    #: Retries of a retriable failure; bounded in time by ``delivery_timeout_ms``.
    retries: int = 2_147_483_647
    #: Upper bound on the time from ``send`` to success or failure of a record.
    delivery_timeout_ms: int = 120_000
    #: Idempotent producer: retries never write a record twice and keep order.
    #: None (the default) turns it on unless ``acks`` is not "all" or
    #: ``max_in_flight`` > 5, as Kafka does; True insists (and rejects such settings).
    enable_idempotence: bool | None = None
    #: Bytes of records buffered before ``send`` blocks (back-pressure).
    buffer_memory: int = 32 * 1024 * 1024
    #: How long ``send`` may block for metadata or buffer space.
    max_block_ms: int = 60_000
    #: The largest record (and produce request) the producer accepts.
    max_request_size: int = 8 * 1024 * 1024
    #: "bytes", "str", "json", "msgpack" or a callable ``key -> bytes``.
    key_serializer: str | Serializer | None = None
    #: "bytes", "str", "json", "msgpack" or a callable ``value -> bytes``.
    value_serializer: str | Serializer | None = None
    #: ``(topic, key_bytes, num_partitions) -> partition``; None = Kafka's default
    #: (murmur2 of the key, sticky partition for records without a key).
    partitioner: Partitioner | None = None
    #: Ask the broker to create a topic on first use (if the broker allows it).
    allow_auto_topic_creation: bool = True

    def __post_init__(self) -> None:
        CommonConfig.__post_init__(self)
        if self.acks not in (0, 1, -1, "all", "0", "1", "-1"):
            raise ValueError(f"acks must be 0, 1 or 'all' (-1), got {self.acks!r}")
        if self.compression not in COMPRESSION_CODECS:
            raise ValueError(
                f"compression must be one of {sorted(COMPRESSION_CODECS)}, got {self.compression!r}"
            )
        _check_int("batch_size", self.batch_size, 1)
        _check_number("linger_ms", self.linger_ms, 0)
        _check_int("max_in_flight", self.max_in_flight, 1)
        _check_int("retries", self.retries, 0)
        _check_int("delivery_timeout_ms", self.delivery_timeout_ms, 1)
        _check_int("buffer_memory", self.buffer_memory, 1024)
        _check_int("max_block_ms", self.max_block_ms, 0)
        _check_int("max_request_size", self.max_request_size, 1024)
        if self.enable_idempotence not in (None, True, False):
            raise TypeError("enable_idempotence must be a bool or None")
        if self.enable_idempotence:
            if self.acks_value != -1:
                raise ValueError(
                    "enable_idempotence=True needs acks='all'; leave it unset (or False) "
                    "to use acks 0 or 1"
                )
            if self.max_in_flight > 5:
                raise ValueError("enable_idempotence=True needs max_in_flight <= 5")
        if self.partitioner is not None and not callable(self.partitioner):
            raise TypeError("partitioner must be a callable (topic, key, num_partitions) -> int")

    @property
    def acks_value(self) -> int:
        """``acks`` as the wire wants it: 0, 1 or -1."""
        return -1 if self.acks in ("all", -1, "-1") else int(self.acks)

    @property
    def idempotent(self) -> bool:
        """Whether the producer runs idempotent (see ``enable_idempotence``)."""
        if self.enable_idempotence is None:
            return self.acks_value == -1 and self.max_in_flight <= 5
        return self.enable_idempotence

    @property
    def compression_codec(self) -> int:
        """``compression`` as the batch attribute code of client.records."""
        return COMPRESSION_CODECS[self.compression]


@dataclass(slots=True)
class ConsumerConfig(CommonConfig):
    """Consumer settings (Kafka's consumer configs, underscored)."""

    #: Where to start when a partition has no position: "earliest", "latest" or
    #: "none" (raise NoOffsetForPartitionError).
    auto_offset_reset: str = "latest"
    #: The broker answers a fetch once this many bytes are available...
    fetch_min_bytes: int = 1
    #: ...or once this much time has passed.
    fetch_max_wait_ms: int = 500
    #: Upper bound of one fetch response.
    fetch_max_bytes: int = 50 * 1024 * 1024
    #: Upper bound per partition in one fetch response.
    max_partition_fetch_bytes: int = 1024 * 1024
    #: Default ``max_records`` of ``poll``.
    max_poll_records: int = 500
    #: Verify each batch's CRC before handing out its records.
    check_crcs: bool = True
    #: "bytes", "str", "json", "msgpack" or a callable ``bytes -> key``.
    key_deserializer: str | Deserializer | None = None
    #: "bytes", "str", "json", "msgpack" or a callable ``bytes -> value``.
    value_deserializer: str | Deserializer | None = None
    #: Ask the broker to create a topic when its metadata is first requested.
    allow_auto_topic_creation: bool = False
    #: The consumer group to join with ``subscribe`` and to commit offsets for (None: no
    #: group; only ``assign`` works).
    group_id: str | None = None
    #: Static membership: a stable id of this consumer instance. A restart with the same
    #: id within the group session timeout gets the old assignment back, with no rebalance.
    group_instance_id: str | None = None
    #: Commit the positions of what ``poll`` returned every ``auto_commit_interval_ms``,
    #: before partitions are revoked, and on ``close``.
    enable_auto_commit: bool = True
    #: How often auto-commit commits (from within ``poll``).
    auto_commit_interval_ms: int = 5_000
    #: The assignor the coordinator should use for the group: "uniform" or "range"
    #: (None: the broker's default, uniform).
    group_remote_assignor: str | None = None
    #: How long the group waits for this member to give up revoked partitions (their
    #: ``on_partitions_revoked`` callbacks run in ``poll``) before removing it.
    rebalance_timeout_ms: int = 300_000

    def __post_init__(self) -> None:
        CommonConfig.__post_init__(self)
        for name in ("group_id", "group_instance_id", "group_remote_assignor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be None or a non-empty str, got {value!r}")
        if self.group_instance_id is not None and self.group_id is None:
            raise ValueError("group_instance_id needs a group_id")
        if not isinstance(self.enable_auto_commit, bool):
            raise TypeError("enable_auto_commit must be a bool")
        _check_int("auto_commit_interval_ms", self.auto_commit_interval_ms, 1)
        _check_int("rebalance_timeout_ms", self.rebalance_timeout_ms, 1)
        if self.auto_offset_reset not in AUTO_OFFSET_RESET:
            raise ValueError(
                f"auto_offset_reset must be one of {AUTO_OFFSET_RESET}, "
                f"got {self.auto_offset_reset!r}"
            )
        _check_int("fetch_min_bytes", self.fetch_min_bytes, 0)
        _check_int("fetch_max_wait_ms", self.fetch_max_wait_ms, 0)
        _check_int("fetch_max_bytes", self.fetch_max_bytes, 1)
        _check_int("max_partition_fetch_bytes", self.max_partition_fetch_bytes, 1)
        _check_int("max_poll_records", self.max_poll_records, 1)
        if not isinstance(self.check_crcs, bool):
            raise TypeError("check_crcs must be a bool")


@dataclass(slots=True)
class AdminConfig(CommonConfig):
    """Admin client settings."""

    #: Time limit of one admin call, retries included.
    default_api_timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        CommonConfig.__post_init__(self)
        _check_int("default_api_timeout_ms", self.default_api_timeout_ms, 1)


def build_config(cls: type[Any], config: Any, overrides: dict[str, Any]) -> Any:
    """``cls(**overrides)``, or ``config`` with ``overrides`` applied; unknown names
    raise TypeError naming them."""
    unknown = set(overrides) - cls.names()
    if unknown:
        raise TypeError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    if config is None:
        return cls(**overrides)
    if not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    values = {f.name: getattr(config, f.name) for f in fields(cls)}
    values.update(overrides)
    return cls(**values)
