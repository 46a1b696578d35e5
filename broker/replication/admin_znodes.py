"""Work asked of the controller through ``/admin``: paths, codecs and the cached view.

    /admin/controlled_shutdown/<id>               ephemeral  {}  broker <id> is stopping: move
                                                              its leaderships away, drop it
                                                              from every ISR
    /admin/preferred_replica_election/<seq>       persistent {partitions: [[topic, p], ...]}
                                                              (empty = every partition)
    /admin/reassign_partitions/<topic>-<p>        persistent {replicas: [ids]}  the target
                                                              replicas of one partition

A controlled-shutdown node is ephemeral so that it disappears with the broker's
session. The controller deletes an election or reassignment node once it has
carried it out. Like every broker znode the data is UTF-8 JSON.

``AdminRequests`` is what the broker's metadata sync read of them (sans-IO);
``changed`` tells whether anything moved since the last ``drain_changed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.znodes import ZnodeDataError, decode, encode

CONTROLLED_SHUTDOWN = "/admin/controlled_shutdown"
PREFERRED_ELECTION = "/admin/preferred_replica_election"
REASSIGN_PARTITIONS = "/admin/reassign_partitions"
ADMIN_PATHS = (CONTROLLED_SHUTDOWN, PREFERRED_ELECTION, REASSIGN_PARTITIONS)
ELECTION_PREFIX = "request-"

TopicPartition = tuple[str, int]


def shutdown_path(broker_id: int) -> str:
    return f"{CONTROLLED_SHUTDOWN}/{broker_id}"


def reassignment_path(topic: str, partition: int) -> str:
    return f"{REASSIGN_PARTITIONS}/{topic}-{partition}"


def parse_reassignment_name(name: str) -> TopicPartition | None:
    """``events-3`` -> ("events", 3) (topic names may contain '-'; the number is last)."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit():
        return None
    return topic, int(number)


def encode_election(partitions: list[TopicPartition] | None) -> bytes:
    """An election request; None means every partition."""
    return encode({"partitions": None if partitions is None else [[t, p] for t, p in partitions]})


def decode_election(data: bytes) -> list[TopicPartition] | None:
    value = decode(data, "preferred replica election")
    raw = value.get("partitions")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ZnodeDataError("preferred replica election: partitions must be a list")
    out: list[TopicPartition] = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or type(item[1]) is not int
        ):
            raise ZnodeDataError(f"preferred replica election: bad partition {item!r}")
        out.append((item[0], item[1]))
    return out


def encode_reassignment(replicas: list[int]) -> bytes:
    return encode({"replicas": replicas})


def decode_reassignment(data: bytes) -> list[int]:
    value = decode(data, "reassignment")
    raw = value.get("replicas")
    if not isinstance(raw, list) or not raw or not all(type(r) is int for r in raw):
        raise ZnodeDataError("reassignment: replicas must be a non-empty list of integers")
    return list(raw)


@dataclass(slots=True)
class AdminRequests:
    """The pending ``/admin`` work as last read from the coordinator."""

    shutting_down: set[int] = field(default_factory=set)
    # sequential node name -> partitions (None = all)
    elections: dict[str, list[TopicPartition] | None] = field(default_factory=dict)
    # (topic, partition) -> target replicas
    reassignments: dict[TopicPartition, list[int]] = field(default_factory=dict)
    changed: bool = False

    def set_shutting_down(self, brokers: set[int]) -> None:
        if brokers != self.shutting_down:
            self.shutting_down = set(brokers)
            self.changed = True

    def set_elections(self, elections: dict[str, list[TopicPartition] | None]) -> None:
        if elections != self.elections:
            self.elections = dict(elections)
            self.changed = True

    def set_reassignments(self, reassignments: dict[TopicPartition, list[int]]) -> None:
        if reassignments != self.reassignments:
            self.reassignments = dict(reassignments)
            self.changed = True

    def drain_changed(self) -> bool:
        changed, self.changed = self.changed, False
        return changed
