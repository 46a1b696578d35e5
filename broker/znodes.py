"""The coordinator namespace brokers share (DESIGN §6): paths and znode data codecs.

Znode data is UTF-8 JSON so that ``coordinator get`` shows it readably, as
Kafka's ZooKeeper data is. Decoders never trust what they read: anything
malformed raises ZnodeDataError, which callers log and skip.

    /cluster/id                              persistent {id}
    /brokers/ids/<id>                        ephemeral  {host, port, rack, started_at,
                                                         hostname, data_dir}
    /controller                              ephemeral  {broker_id, epoch}
    /controller_epoch                        persistent {epoch}  (CAS on version)
    /topics/<name>                           persistent {topic_id, partitions: {p: [replicas]},
                                                         config: {key: value}}
    /topics/<name>/partitions/<p>/state      persistent {leader, leader_epoch, isr,
                                                         controller_epoch}  (CAS on version)
    /admin/delete_topics/<name>              persistent {}  (a deletion for the controller)
    /producer_id_block                       persistent {broker_id, start, end}  (CAS on version)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CLUSTER_ID = "/cluster/id"
BROKER_IDS = "/brokers/ids"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
TOPICS = "/topics"
ADMIN_DELETE_TOPICS = "/admin/delete_topics"
PRODUCER_ID_BLOCK = "/producer_id_block"

NO_LEADER = -1


class ZnodeDataError(ValueError):
    """Znode data that does not decode into what the path should hold."""


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{topic}"


def partitions_path(topic: str) -> str:
    return f"{TOPICS}/{topic}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{TOPICS}/{topic}/partitions/{partition}"


def state_path(topic: str, partition: int) -> str:
    return f"{TOPICS}/{topic}/partitions/{partition}/state"


def delete_topic_path(topic: str) -> str:
    return f"{ADMIN_DELETE_TOPICS}/{topic}"


@dataclass(frozen=True, slots=True)
class TopicsPath:
    """What a path below /topics names: a topic, or one partition's state (else None)."""

    topic: str
    partition: int | None = None


def parse_topics_path(path: str) -> TopicsPath | None:
    """``/topics/t`` -> TopicsPath("t"); ``/topics/t/partitions/3/state`` -> TopicsPath("t", 3)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1] != "topics" or not parts[2]:
        return None
    if len(parts) == 3:
        return TopicsPath(parts[2])
    if len(parts) == 6 and parts[3] == "partitions" and parts[5] == "state" and parts[4].isdigit():
        return TopicsPath(parts[2], int(parts[4]))
    return None


def parse_broker_path(path: str) -> int | None:
    """``/brokers/ids/3`` -> 3 (else None)."""
    prefix = BROKER_IDS + "/"
    if path.startswith(prefix) and path[len(prefix) :].isdigit():
        return int(path[len(prefix) :])
    return None


# ---------------------------------------------------------------- codecs


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZnodeDataError(f"{what}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ZnodeDataError(f"{what}: expected a JSON object")
    return value


def _int(value: dict[str, Any], key: str, what: str, default: int | None = None) -> int:
    v = value.get(key, default)
    if type(v) is not int:
        raise ZnodeDataError(f"{what}: {key} must be an integer, got {v!r}")
    return v


def _str(value: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    v = value.get(key, default)
    if not isinstance(v, str):
        raise ZnodeDataError(f"{what}: {key} must be a string, got {v!r}")
    return v


def _int_list(v: Any, what: str) -> list[int]:
    if not isinstance(v, list) or not all(type(x) is int for x in v):
        raise ZnodeDataError(f"{what}: expected a list of integers, got {v!r}")
    return list(v)


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    host: str
    port: int
    rack: str = ""
    started_at: int = 0
    hostname: str = ""
    data_dir: str = ""

    def to_bytes(self) -> bytes:
        return encode(
            {
                "host": self.host,
                "port": self.port,
                "rack": self.rack or None,
                "started_at": self.started_at,
                "hostname": self.hostname,
                "data_dir": self.data_dir,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BrokerRegistration:
        what = "broker registration"
        v = decode(data, what)
        rack = v.get("rack")
        return cls(
            host=_str(v, "host", what),
            port=_int(v, "port", what),
            rack=rack if isinstance(rack, str) else "",
            started_at=_int(v, "started_at", what, 0),
            hostname=_str(v, "hostname", what, ""),
            data_dir=_str(v, "data_dir", what, ""),
        )


@dataclass(frozen=True, slots=True)
class ControllerData:
    broker_id: int
    epoch: int

    def to_bytes(self) -> bytes:
        return encode({"broker_id": self.broker_id, "epoch": self.epoch})

    @classmethod
    def from_bytes(cls, data: bytes) -> ControllerData:
        v = decode(data, "controller")
        return cls(_int(v, "broker_id", "controller"), _int(v, "epoch", "controller", 0))


def encode_epoch(epoch: int) -> bytes:
    return encode({"epoch": epoch})


def decode_epoch(data: bytes) -> int:
    if not data:
        return 0
    return _int(decode(data, "controller epoch"), "epoch", "controller epoch")


@dataclass(frozen=True, slots=True)
class TopicAssignment:
    """A topic's znode: its id, replicas per partition and config overrides."""

    topic_id: str
    partitions: dict[int, list[int]]
    config: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return encode(
            {
                "topic_id": self.topic_id,
                "partitions": {str(p): r for p, r in sorted(self.partitions.items())},
                "config": self.config,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TopicAssignment:
        what = "topic"
        v = decode(data, what)
        raw = v.get("partitions")
        if not isinstance(raw, dict):
            raise ZnodeDataError(f"{what}: partitions must be an object")
        partitions: dict[int, list[int]] = {}
        for key, replicas in raw.items():
            if not isinstance(key, str) or not key.isdigit():
                raise ZnodeDataError(f"{what}: partition key {key!r} is not a number")
            partitions[int(key)] = _int_list(replicas, what)
        config = v.get("config", {})
        if not isinstance(config, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in config.items()
        ):
            raise ZnodeDataError(f"{what}: config must map strings to strings")
        return cls(_str(v, "topic_id", what, ""), partitions, dict(config))


@dataclass(frozen=True, slots=True)
class PartitionStateData:
    leader: int
    leader_epoch: int
    isr: list[int]
    controller_epoch: int = 0

    def to_bytes(self) -> bytes:
        return encode(
            {
                "leader": self.leader,
                "leader_epoch": self.leader_epoch,
                "isr": self.isr,
                "controller_epoch": self.controller_epoch,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PartitionStateData:
        what = "partition state"
        v = decode(data, what)
        return cls(
            _int(v, "leader", what),
            _int(v, "leader_epoch", what),
            _int_list(v.get("isr"), what),
            _int(v, "controller_epoch", what, 0),
        )


@dataclass(frozen=True, slots=True)
class ProducerIdBlockData:
    """The most recently handed out block of producer ids: [start, end)."""

    broker_id: int
    start: int
    end: int

    def to_bytes(self) -> bytes:
        return encode({"broker_id": self.broker_id, "start": self.start, "end": self.end})

    @classmethod
    def from_bytes(cls, data: bytes) -> ProducerIdBlockData:
        what = "producer id block"
        v = decode(data, what)
        return cls(_int(v, "broker_id", what), _int(v, "start", what), _int(v, "end", what))
