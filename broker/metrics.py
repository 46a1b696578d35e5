"""The broker's metrics: what it measures as it runs, and what a scrape reads.

Names follow Kafka's JMX metrics, Prometheus style, with the
``rivulet_broker_`` prefix and seconds as the unit (docs/monitoring.md lists
every one with its Kafka counterpart). Three sources, none of them per record:

- *measured per request* (``RequestStats``): the dispatcher stamps each
  request's api and arrival time in its connection, and the connection turns
  the stamp into one latency observation when it sends the answer — however
  late that is (a parked fetch, an acks=all produce);
- *observed in the metadata* (``MetadataObserver``): leader elections and ISR
  changes, seen as each partition-state write arrives through the watches;
- *read at scrape time* (``BrokerCollector``): counts, log sizes, offsets,
  consumer lag, from the live objects on the event loop. Per-topic traffic
  comes from per-partition counters that ``Partition`` bumps once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from client.observability import LATENCY_BUCKETS, CheckResult, Histogram, histogram_family
from client.protocol import ApiKey
from coordinator.client import ConnectionState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from broker.connection import ClientConnection
    from broker.metadata_cache import Changes, MetadataCache
    from broker.partition import Partition
    from broker.server import Broker

PREFIX = "rivulet_broker_"
#: Pseudo api keys used as labels: requests whose api is not one of ours, and the
#: fetches of follower replicas (Kafka's FetchFollower, apart from FetchConsumer).
UNKNOWN_API = -1
FOLLOWER_FETCH = -2
_FETCH = int(ApiKey.FETCH)
_PRODUCE = int(ApiKey.PRODUCE)
_API_NAMES: dict[int, str] = {int(api): api.name.lower() for api in ApiKey}
_API_NAMES[UNKNOWN_API] = "unknown"
_API_NAMES[FOLLOWER_FETCH] = "fetch_follower"


def request_key(api: int, payload: Any) -> int:
    """The latency label of a request: its api, or FOLLOWER_FETCH for a replica's fetch."""
    if api == _FETCH and isinstance(payload, dict):
        replica = payload.get("replica_id", -1)
        if type(replica) is int and replica >= 0:
            return FOLLOWER_FETCH
    return api


def answers_never(api: int, payload: Any) -> bool:
    """Whether a request gets no response at all (an acks=0 produce)."""
    return api == _PRODUCE and isinstance(payload, dict) and payload.get("acks") == 0


class RequestStats:
    """Request latency per api, and the open connections (event-loop thread only)."""

    __slots__ = ("by_api", "connections")

    def __init__(self) -> None:
        self.by_api: dict[int, Histogram] = {}
        self.connections: set[ClientConnection] = set()

    def done(self, api: int, seconds: float) -> None:
        """A request of ``api`` (a ``request_key``) was answered ``seconds`` after arrival."""
        histogram = self.by_api.get(api)
        if histogram is None:
            if api not in _API_NAMES:
                api = UNKNOWN_API  # never a label per value a client made up
            histogram = self.by_api.setdefault(api, Histogram(LATENCY_BUCKETS))
        histogram.observe(seconds)


# ---------------------------------------------------------------- metadata events


@dataclass(slots=True)
class _Seen:
    leader: int
    leader_epoch: int
    isr: frozenset[int]


class MetadataObserver:
    """Counts leader elections and ISR changes as partition states arrive.

    An election is a new leader epoch with a leader; it is counted by the
    broker that is the active controller when it sees the write (the writer),
    so the sum over brokers counts each once; it is *unclean* when the new
    leader was not in the previous ISR. An ISR change is counted by the broker
    that led the partition before and after it (Kafka counts shrinks and
    expands at the leader). Changes that land between two reads of the same
    state are seen as one.
    """

    def __init__(
        self, broker_id: int, cache: MetadataCache, is_controller: Callable[[], bool]
    ) -> None:
        self.broker_id = broker_id
        self.cache = cache
        self.is_controller = is_controller
        self.leader_elections = 0
        self.unclean_leader_elections = 0
        self.isr_shrinks = 0
        self.isr_expands = 0
        # topic -> (topic id, partition -> last state seen)
        self._seen: dict[str, tuple[str, dict[int, _Seen]]] = {}

    def baseline(self) -> None:
        """Remember every state in the cache without counting (after the first load)."""
        for name in list(self.cache.topics):
            self._look(name, count=False)

    async def on_changes(self, changes: Changes) -> None:
        """Metadata listener (broker.metadata_sync)."""
        for name in changes.topics:
            self._look(name, count=True)

    def _look(self, name: str, *, count: bool) -> None:
        topic = self.cache.topics.get(name)
        if topic is None:
            self._seen.pop(name, None)
            return
        known = self._seen.get(name)
        if known is None or known[0] != topic.topic_id:
            known = (topic.topic_id, {})
            self._seen[name] = known
        previous = known[1]
        current: dict[int, _Seen] = {}
        controller = count and self.is_controller()
        me = self.broker_id
        for index, info in topic.states.items():
            state = info.state
            now = _Seen(state.leader, state.leader_epoch, frozenset(state.isr))
            current[index] = now
            before = previous.get(index)
            if before is None or not count:
                continue
            if controller and now.leader >= 0 and now.leader_epoch > before.leader_epoch:
                self.leader_elections += 1
                if now.leader not in before.isr:
                    self.unclean_leader_elections += 1
            if now.leader == me and before.leader == me:
                if before.isr - now.isr:
                    self.isr_shrinks += 1
                if now.isr - before.isr:
                    self.isr_expands += 1
        known[1].clear()
        known[1].update(current)


# ---------------------------------------------------------------- per-topic traffic


class TopicTraffic:
    """Per-topic counters summed from the partitions' own, robust to partitions coming
    and going: each scrape adds what every partition gained since the last one."""

    def __init__(self) -> None:
        self.totals: dict[str, list[int]] = {}  # topic -> [messages in, bytes in, bytes out]
        self._last: dict[tuple[str, int], tuple[Partition, tuple[int, int, int]]] = {}

    def update(self, partitions: list[Partition], topics: set[str]) -> dict[str, list[int]]:
        last = self._last
        seen: dict[tuple[str, int], tuple[Partition, tuple[int, int, int]]] = {}
        for p in partitions:
            now = (p.messages_in, p.bytes_in, p.bytes_out)
            before = last.get(p.key)
            base = before[1] if before is not None and before[0] is p else (0, 0, 0)
            total = self.totals.setdefault(p.topic, [0, 0, 0])
            for i in range(3):
                total[i] += now[i] - base[i]
            seen[p.key] = (p, now)
        self._last = seen
        for name in [t for t in self.totals if t not in topics]:
            del self.totals[name]  # the topic was deleted: its series goes too
        return self.totals


# ---------------------------------------------------------------- the collector


class BrokerCollector(Collector):
    """Reads the broker at scrape time (on its event loop; see client.observability)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.traffic = TopicTraffic()

    def collect(self) -> Iterator[Metric]:
        b = self.broker
        info = InfoMetricFamily(PREFIX.rstrip("_"), "This broker's id and cluster.")
        info.add_metric(
            [], {"broker_id": str(b.config.broker_id), "cluster_id": b.cache.cluster_id}
        )
        yield info
        yield from self._requests()
        yield from self._partitions()
        yield from self._cluster()
        yield from self._groups()
        yield histogram_family(
            PREFIX + "log_flush_seconds",
            "Time of each flush (fsync) of the dirty logs, one per group commit "
            "(Kafka: LogFlushRateAndTimeMs).",
            [((), b.committer.flush_time)],
        )

    # ------------------------------------------------------------ requests

    def _requests(self) -> Iterator[Metric]:
        stats = self.broker.request_stats
        by_api = sorted(stats.by_api.items())
        requests = CounterMetricFamily(
            PREFIX + "requests",
            "Requests answered, by api (Kafka: RequestsPerSec); fetch_follower is replicas' "
            "fetches.",
            labels=["api"],
        )
        for api, histogram in by_api:
            requests.add_metric([_API_NAMES[api]], histogram.count)
        yield requests
        yield histogram_family(
            PREFIX + "request_latency_seconds",
            "Time from reading a request to sending its response, waits included (a parked "
            "fetch, an acks=all produce), by api (Kafka: TotalTimeMs).",
            (([_API_NAMES[api]], histogram) for api, histogram in by_api),
            ["api"],
        )
        yield CounterMetricFamily(
            PREFIX + "request_errors",
            "Requests answered with an error code in the response envelope (Kafka: "
            "ErrorsPerSec; per-partition errors inside a response are not counted).",
            value=self.broker.dispatcher.errors,
        )
        connections = stats.connections
        yield GaugeMetricFamily(
            PREFIX + "connections",
            "Open client connections (followers' included) (Kafka: connection-count).",
            value=len(connections),
        )
        yield GaugeMetricFamily(
            PREFIX + "requests_in_flight",
            "Requests read and not answered yet: parked fetches, acks=all produces, admin and "
            "group requests waiting (Kafka: RequestQueueSize plus purgatory sizes).",
            value=sum(len(c.in_flight) for c in connections),
        )
        yield GaugeMetricFamily(
            PREFIX + "response_queue_bytes",
            "Response bytes queued for slow clients and not yet handed to the kernel.",
            value=sum(c.framed.queued_bytes for c in connections),
        )

    # ------------------------------------------------------------ partitions and logs

    def _partitions(self) -> Iterator[Metric]:
        b = self.broker
        hosted = list(b.replicas.partitions.values())
        hosted.sort(key=lambda p: p.key)
        totals = self.traffic.update(hosted, set(b.cache.topics))
        families = {
            "messages": CounterMetricFamily(
                PREFIX + "topic_messages_in",
                "Records appended by producers, by topic (Kafka: MessagesInPerSec).",
                labels=["topic"],
            ),
            "bytes_in": CounterMetricFamily(
                PREFIX + "topic_bytes_in",
                "Batch bytes appended by producers, by topic (Kafka: BytesInPerSec).",
                labels=["topic"],
            ),
            "bytes_out": CounterMetricFamily(
                PREFIX + "topic_bytes_out",
                "Batch bytes sent to consumers (not followers), by topic (Kafka: BytesOutPerSec).",
                labels=["topic"],
            ),
        }
        for name in sorted(totals):
            messages, bytes_in, bytes_out = totals[name]
            families["messages"].add_metric([name], messages)
            families["bytes_in"].add_metric([name], bytes_in)
            families["bytes_out"].add_metric([name], bytes_out)
        yield from families.values()

        labels = ["topic", "partition"]
        size = GaugeMetricFamily(
            PREFIX + "log_size_bytes",
            "Bytes of the partition's log (Kafka: Log Size).",
            labels=labels,
        )
        segments = GaugeMetricFamily(
            PREFIX + "log_segments",
            "Segments of the partition's log (Kafka: NumLogSegments).",
            labels=labels,
        )
        start = GaugeMetricFamily(
            PREFIX + "log_start_offset",
            "First offset in the log (Kafka: LogStartOffset).",
            labels=labels,
        )
        end = GaugeMetricFamily(
            PREFIX + "log_end_offset",
            "Offset of the next append (Kafka: LogEndOffset).",
            labels=labels,
        )
        high = GaugeMetricFamily(
            PREFIX + "high_watermark",
            "Offset below which records are committed and visible to consumers.",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            PREFIX + "replica_lag_messages",
            "On the leader: the log end minus each follower's fetch offset (unknown until the "
            "follower has fetched).",
            labels=[*labels, "replica"],
        )
        led = under_replicated = under_min_isr = failed = 0
        for p in hosted:
            values = [p.topic, str(p.partition)]
            # Read without the log's lock: never wait for a worker thread on the loop.
            log_segments = list(p.log.segments)
            size.add_metric(values, sum(segment.size for segment in log_segments))
            segments.add_metric(values, len(log_segments))
            start.add_metric(values, p.log_start_offset)
            end.add_metric(values, p.log_end_offset)
            high.add_metric(values, p.high_watermark)
            if p.failed:
                failed += 1
            state = p.leader_state
            if not p.is_leader or state is None:
                continue
            led += 1
            if len(state.isr) < len(p.replicas):
                under_replicated += 1
            if len(state.isr) < p.settings.min_insync_replicas:
                under_min_isr += 1
            for replica, progress in sorted(state.followers.items()):
                if progress.log_end_offset >= 0:
                    behind = max(0, p.log_end_offset - progress.log_end_offset)
                    lag.add_metric([*values, str(replica)], behind)
        yield from (size, segments, start, end, high, lag)
        yield GaugeMetricFamily(
            PREFIX + "partitions",
            "Partitions hosted here, led or followed (Kafka: PartitionCount).",
            value=len(hosted),
        )
        yield GaugeMetricFamily(
            PREFIX + "leader_partitions", "Partitions led here (Kafka: LeaderCount).", value=led
        )
        yield GaugeMetricFamily(
            PREFIX + "under_replicated_partitions",
            "Partitions led here whose ISR is smaller than their replica set "
            "(Kafka: UnderReplicatedPartitions).",
            value=under_replicated,
        )
        yield GaugeMetricFamily(
            PREFIX + "under_min_isr_partitions",
            "Partitions led here whose ISR is smaller than min.insync.replicas: acks=all "
            "produces fail (Kafka: UnderMinIsrPartitionCount).",
            value=under_min_isr,
        )
        yield GaugeMetricFamily(
            PREFIX + "offline_log_partitions",
            "Partitions hosted here whose log failed (a storage error took it offline).",
            value=failed,
        )

    # ------------------------------------------------------------ cluster (controller)

    def _cluster(self) -> Iterator[Metric]:
        b = self.broker
        observer = b.metadata_observer
        active = b.controller.active
        yield GaugeMetricFamily(
            PREFIX + "active_controller",
            "1 on the broker that is the controller, else 0 (Kafka: ActiveControllerCount).",
            value=1 if active else 0,
        )
        offline = 0
        if active:
            for topic in b.cache.topics.values():
                for index in topic.assignment.partitions:
                    if topic.leader(index) < 0:
                        offline += 1
        yield GaugeMetricFamily(
            PREFIX + "offline_partitions",
            "On the controller: partitions of the cluster without a leader; 0 on other "
            "brokers (Kafka: OfflinePartitionsCount).",
            value=offline,
        )
        yield CounterMetricFamily(
            PREFIX + "leader_elections",
            "Leader elections (new leader epochs with a leader), counted by the controller "
            "(Kafka: LeaderElectionRateAndTimeMs).",
            value=observer.leader_elections,
        )
        yield CounterMetricFamily(
            PREFIX + "unclean_leader_elections",
            "Leader elections of a replica outside the previous ISR (Kafka: "
            "UncleanLeaderElectionsPerSec).",
            value=observer.unclean_leader_elections,
        )
        yield CounterMetricFamily(
            PREFIX + "isr_shrinks",
            "ISR changes that removed a replica, of partitions led here (Kafka: IsrShrinksPerSec).",
            value=observer.isr_shrinks,
        )
        yield CounterMetricFamily(
            PREFIX + "isr_expands",
            "ISR changes that added a replica, of partitions led here (Kafka: IsrExpandsPerSec).",
            value=observer.isr_expands,
        )

    # ------------------------------------------------------------ consumer groups

    def _groups(self) -> Iterator[Metric]:
        b = self.broker
        partitions = b.replicas.partitions
        groups = GaugeMetricFamily(
            PREFIX + "groups",
            "Consumer groups coordinated here, by state (Kafka: NumGroups, NumGroupsStable, ...).",
            labels=["state"],
        )
        members = GaugeMetricFamily(
            PREFIX + "group_members", "Members of each group coordinated here.", labels=["group"]
        )
        committed = GaugeMetricFamily(
            PREFIX + "group_committed_offset",
            "The group's committed offset, per partition.",
            labels=["group", "topic", "partition"],
        )
        lag = GaugeMetricFamily(
            PREFIX + "group_lag_messages",
            "High watermark minus the committed offset, per partition; only for partitions led "
            "by this broker (their high watermark is known here).",
            labels=["group", "topic", "partition"],
        )
        by_state: dict[str, int] = {}
        for loaded in b.groups.loaded_shards():
            shard = loaded.shard
            for group_id, state in shard.list_groups():
                by_state[str(state)] = by_state.get(str(state), 0) + 1
                group = shard.groups.get(group_id)
                members.add_metric([group_id], len(group.members) if group is not None else 0)
            for group_id, offsets in shard.offsets.items():
                for (topic, index), value in sorted(offsets.items()):
                    values = [group_id, topic, str(index)]
                    committed.add_metric(values, value.offset)
                    p = partitions.get((topic, index))
                    if p is not None and p.is_leader:
                        lag.add_metric(values, max(0, p.high_watermark - value.offset))
        for state_name in sorted(by_state):
            groups.add_metric([state_name], by_state[state_name])
        yield from (groups, members, committed, lag)


# ---------------------------------------------------------------- health


def broker_health(broker: Broker) -> CheckResult:
    """Serving: listening, registered in /brokers/ids (so the metadata is loaded), and
    holding a coordinator session."""
    cache = broker.cache
    me = broker.config.broker_id
    registered = me in cache.brokers
    state = broker.zk.state
    ok = broker.serving and registered and state is not ConnectionState.LOST
    return CheckResult(
        ok,
        {
            "broker_id": me,
            "port": broker.port,
            "registered": registered,
            "session": state.value,
            "controller_id": cache.controller_id,
            "partitions": len(broker.replicas.partitions),
        },
    )


def starting_health() -> CheckResult:
    """The broker's check before the broker exists (data dir, coordinator, session)."""
    return CheckResult(False, {"state": "starting"})
