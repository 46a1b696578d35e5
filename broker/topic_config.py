"""Per-topic configuration under Kafka's names: definitions, validation, effective values.

A topic stores only its overrides (strings, as Kafka's) in ``/topics/<name>``;
every other key takes the broker's default. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.config import CLEANUP_POLICIES, BrokerConfig
from broker.log import LogConfig
from client.protocol import InvalidConfigError

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TopicConfigDef:
    """One topic config key: how to read its string value and where its default comes from."""

    name: str
    kind: str  # "int", "bool" or "policy"
    default: Callable[[BrokerConfig], Any]
    doc: str
    lo: int = 0
    hi: int = INT64_MAX

    def parse(self, value: str) -> Any:
        """The typed value of ``value``; raises INVALID_CONFIG."""
        if not isinstance(value, str):
            raise InvalidConfigError(f"{self.name}: values are strings, got {value!r}")
        text = value.strip()
        if self.kind == "bool":
            if text.lower() not in ("true", "false"):
                raise InvalidConfigError(f"{self.name} must be true or false, got {value!r}")
            return text.lower() == "true"
        if self.kind == "policy":
            policy = ",".join(sorted(p.strip().lower() for p in text.split(",")))
            if policy not in CLEANUP_POLICIES:
                raise InvalidConfigError(
                    f"{self.name} must be one of {', '.join(CLEANUP_POLICIES)}, got {value!r}"
                )
            return policy
        try:
            number = int(text)
        except ValueError:
            raise InvalidConfigError(f"{self.name} must be an integer, got {value!r}") from None
        if not self.lo <= number <= self.hi:
            raise InvalidConfigError(f"{self.name} must be in [{self.lo}, {self.hi}], got {number}")
        return number

    def render(self, value: Any) -> str:
        if self.kind == "bool":
            return "true" if value else "false"
        return str(value)


def _def(
    name: str,
    kind: str,
    default: Callable[[BrokerConfig], Any],
    doc: str,
    lo: int = 0,
    hi: int = INT64_MAX,
) -> TopicConfigDef:
    return TopicConfigDef(name, kind, default, doc, lo, hi)


TOPIC_CONFIGS: dict[str, TopicConfigDef] = {
    d.name: d
    for d in (
        _def(
            "cleanup.policy",
            "policy",
            lambda c: c.cleanup_policy,
            "delete: drop old segments by time and size; compact: keep the newest record per key.",
        ),
        _def(
            "retention.ms",
            "int",
            lambda c: c.retention_ms,
            "Delete segments whose newest record is older than this (ms); -1 keeps forever.",
            lo=-1,
        ),
        _def(
            "retention.bytes",
            "int",
            lambda c: c.retention_bytes,
            "Delete the oldest segments while the partition is larger than this; -1: no limit.",
            lo=-1,
        ),
        _def(
            "segment.bytes",
            "int",
            lambda c: c.segment_bytes,
            "Roll the active segment at this size (bytes).",
            lo=1024,
            hi=INT32_MAX,
        ),
        _def(
            "segment.ms",
            "int",
            lambda c: c.segment_ms,
            "Roll the active segment once it is this old (ms).",
            lo=1,
        ),
        _def(
            "max.message.bytes",
            "int",
            lambda c: c.max_message_bytes,
            "The largest record batch accepted, header included (bytes).",
            lo=61,
            hi=INT32_MAX,
        ),
        _def(
            "delete.retention.ms",
            "int",
            lambda c: 86_400_000,
            "How long compaction keeps a tombstone (a record with a null value), in ms.",
        ),
        _def(
            "index.interval.bytes",
            "int",
            lambda c: 4096,
            "Bytes of batches between two entries of the sparse offset index.",
            lo=1,
            hi=INT32_MAX,
        ),
        _def(
            "min.insync.replicas",
            "int",
            lambda c: c.min_insync_replicas,
            "An acks=all produce fails with NOT_ENOUGH_REPLICAS below this many in-sync replicas.",
            lo=1,
            hi=INT32_MAX,
        ),
        _def(
            "unclean.leader.election.enable",
            "bool",
            lambda c: False,
            "Allow a replica outside the ISR to become leader (may lose acknowledged records).",
        ),
    )
}


def validate_overrides(overrides: Mapping[Any, Any]) -> dict[str, str]:
    """Check every key and value; return them normalised. Raises INVALID_CONFIG."""
    out: dict[str, str] = {}
    for key, value in overrides.items():
        definition = TOPIC_CONFIGS.get(key) if isinstance(key, str) else None
        if definition is None:
            raise InvalidConfigError(
                f"unknown topic config {key!r}; known: {', '.join(sorted(TOPIC_CONFIGS))}"
            )
        out[key] = definition.render(definition.parse(value))
    return out


def apply_alter(
    current: Mapping[str, str], set_: Mapping[Any, Any], delete: list[Any]
) -> dict[str, str]:
    """Incremental alter (Kafka's IncrementalAlterConfigs): set some keys, reset others."""
    result = dict(current)
    result.update(validate_overrides(set_))
    for key in delete:
        if not isinstance(key, str) or key not in TOPIC_CONFIGS:
            raise InvalidConfigError(f"unknown topic config {key!r}")
        result.pop(key, None)
    return result


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """The effective, typed configuration of one topic."""

    cleanup_policy: str
    retention_ms: int
    retention_bytes: int
    segment_bytes: int
    segment_ms: int
    max_message_bytes: int
    delete_retention_ms: int
    index_interval_bytes: int
    min_insync_replicas: int
    unclean_leader_election: bool

    def log_config(self) -> LogConfig:
        """The partition log's config; the broker's committer does every flush."""
        return LogConfig(
            segment_bytes=self.segment_bytes,
            segment_ms=self.segment_ms,
            index_interval_bytes=self.index_interval_bytes,
            retention_ms=self.retention_ms,
            retention_bytes=self.retention_bytes,
            cleanup_policy=self.cleanup_policy,
            delete_retention_ms=self.delete_retention_ms,
            flush="never",
            max_batch_bytes=self.max_message_bytes,
        )


def effective(overrides: Mapping[str, str], broker: BrokerConfig) -> dict[str, tuple[Any, bool]]:
    """Every key -> (typed value, is_default). Unknown or bad stored keys are skipped."""
    out: dict[str, tuple[Any, bool]] = {}
    for name, definition in TOPIC_CONFIGS.items():
        raw = overrides.get(name)
        if raw is not None:
            try:
                out[name] = (definition.parse(raw), False)
                continue
            except InvalidConfigError:
                pass
        out[name] = (definition.default(broker), True)
    return out


def settings(overrides: Mapping[str, str], broker: BrokerConfig) -> TopicSettings:
    """The typed settings of a topic with these overrides."""
    values = {name: value for name, (value, _) in effective(overrides, broker).items()}
    return TopicSettings(
        cleanup_policy=values["cleanup.policy"],
        retention_ms=values["retention.ms"],
        retention_bytes=values["retention.bytes"],
        segment_bytes=values["segment.bytes"],
        segment_ms=values["segment.ms"],
        max_message_bytes=values["max.message.bytes"],
        delete_retention_ms=values["delete.retention.ms"],
        index_interval_bytes=values["index.interval.bytes"],
        min_insync_replicas=values["min.insync.replicas"],
        unclean_leader_election=values["unclean.leader.election.enable"],
    )


def markdown_table(broker: BrokerConfig | None = None) -> str:
    """The topic config table of docs/broker.md, with the broker's default values."""
    config = broker or BrokerConfig()
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for d in TOPIC_CONFIGS.values():
        rows.append(f"| `{d.name}` | `{d.render(d.default(config))}` | {d.doc} |")
    return "\n".join(rows)
