"""The broker's view of cluster metadata (sans-IO): brokers, controller, topics, partitions.

The trio shell (broker.metadata_sync) feeds it what it reads from the coordinator
after each watch event; request handlers and the controller read it. Every
mutation records what it touched, and ``drain_changes`` hands that over once per
batch of events so listeners only look at what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.znodes import (
    NO_LEADER,
    BrokerRegistration,
    ControllerData,
    PartitionStateData,
    TopicAssignment,
)


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    broker_id: int
    registration: BrokerRegistration
    # zxid that created the registration: a restarted broker gets a new one (its "epoch").
    czxid: int


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition's state znode, with the znode's version and last-modified zxid."""

    state: PartitionStateData
    version: int
    mzxid: int

    @property
    def leader(self) -> int:
        return self.state.leader

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    @property
    def isr(self) -> list[int]:
        return self.state.isr


@dataclass(slots=True)
class TopicInfo:
    name: str
    assignment: TopicAssignment
    version: int
    states: dict[int, PartitionInfo] = field(default_factory=dict)

    @property
    def topic_id(self) -> str:
        return self.assignment.topic_id

    @property
    def config(self) -> dict[str, str]:
        return self.assignment.config

    @property
    def partition_count(self) -> int:
        return len(self.assignment.partitions)

    def replicas(self, partition: int) -> list[int]:
        return self.assignment.partitions.get(partition, [])

    def leader(self, partition: int) -> int:
        info = self.states.get(partition)
        return NO_LEADER if info is None else info.state.leader


@dataclass(slots=True)
class Changes:
    """What moved since the last drain."""

    brokers: bool = False
    controller: bool = False
    topics: set[str] = field(default_factory=set)
    deletions: bool = False

    def __bool__(self) -> bool:
        return self.brokers or self.controller or bool(self.topics) or self.deletions


class MetadataCache:
    def __init__(self) -> None:
        self.cluster_id = ""
        self.controller: ControllerData | None = None
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicInfo] = {}
        # Topics whose deletion was requested (/admin/delete_topics children).
        self.pending_deletions: set[str] = set()
        # Partition states read before their topic znode (applied when it arrives).
        self._orphans: dict[str, dict[int, PartitionInfo]] = {}
        self._changes = Changes()

    # ------------------------------------------------------------ mutation

    def set_broker(self, broker_id: int, registration: BrokerRegistration, czxid: int) -> None:
        old = self.brokers.get(broker_id)
        if old is None or old.registration != registration or old.czxid != czxid:
            self.brokers[broker_id] = BrokerInfo(broker_id, registration, czxid)
            self._changes.brokers = True

    def remove_broker(self, broker_id: int) -> None:
        if self.brokers.pop(broker_id, None) is not None:
            self._changes.brokers = True

    def set_controller(self, controller: ControllerData | None) -> None:
        if controller != self.controller:
            self.controller = controller
            self._changes.controller = True

    def set_topic(self, name: str, assignment: TopicAssignment, version: int) -> None:
        topic = self.topics.get(name)
        if topic is not None and topic.topic_id != assignment.topic_id:
            # Deleted and re-created between two reads: the old partitions are gone.
            topic = None
        if topic is None:
            topic = TopicInfo(name, assignment, version)
            self.topics[name] = topic
            for partition, info in self._orphans.pop(name, {}).items():
                if partition in assignment.partitions:
                    topic.states[partition] = info
        elif version >= topic.version:
            topic.assignment = assignment
            topic.version = version
            for partition in [p for p in topic.states if p not in assignment.partitions]:
                del topic.states[partition]
        self._changes.topics.add(name)

    def remove_topic(self, name: str) -> None:
        self._orphans.pop(name, None)
        if self.topics.pop(name, None) is not None:
            self._changes.topics.add(name)

    def set_state(
        self, name: str, partition: int, state: PartitionStateData, version: int, mzxid: int
    ) -> None:
        info = PartitionInfo(state, version, mzxid)
        topic = self.topics.get(name)
        if topic is None:
            self._orphans.setdefault(name, {})[partition] = info
            return
        old = topic.states.get(partition)
        if old is not None and old.mzxid > mzxid:
            return
        topic.states[partition] = info
        self._changes.topics.add(name)

    def remove_state(self, name: str, partition: int) -> None:
        orphans = self._orphans.get(name)
        if orphans is not None:
            orphans.pop(partition, None)
        topic = self.topics.get(name)
        if topic is not None and topic.states.pop(partition, None) is not None:
            self._changes.topics.add(name)

    def set_pending_deletions(self, names: set[str]) -> None:
        if names != self.pending_deletions:
            self.pending_deletions = set(names)
            self._changes.deletions = True

    def drain_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    # ------------------------------------------------------------ queries

    @property
    def controller_id(self) -> int:
        return -1 if self.controller is None else self.controller.broker_id

    def live_brokers(self) -> set[int]:
        return set(self.brokers)

    def topic(self, name: str) -> TopicInfo | None:
        return self.topics.get(name)

    def partition(self, name: str, partition: int) -> PartitionInfo | None:
        topic = self.topics.get(name)
        return None if topic is None else topic.states.get(partition)
