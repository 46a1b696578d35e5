"""ELECT_LEADERS: move leadership back to each partition's preferred replica (on demand).

The preferred replica is the first of a partition's assignment; placement spreads
those evenly over the brokers, so electing them spreads the load again after a
broker came back. For each partition asked (every partition when the request
names none) the answer is: done (0), ELECTION_NOT_NEEDED (it leads already),
PREFERRED_LEADER_NOT_AVAILABLE (dead, out of sync or stopping),
UNKNOWN_TOPIC_OR_PARTITION, or REQUEST_TIMED_OUT when the controller had not
moved it within ``timeout_ms`` (it still will). The eligible partitions go to the
controller as one ``/admin/preferred_replica_election`` request.
"""

from __future__ import annotations

from typing import Any

from broker.controller_plan import Preferred, all_partitions, preferred_status
from broker.metadata_cache import MetadataCache
from broker.replication.admin_znodes import (
    ELECTION_PREFIX,
    PREFERRED_ELECTION,
    AdminRequests,
    encode_election,
)
from broker.topic_admin import TopicAdmin
from client.protocol import (
    ElectionNotNeededError,
    PreferredLeaderNotAvailableError,
    UnknownTopicOrPartitionError,
)
from client.wire import InvalidRequestError, Payload, RequestTimedOutError, ServerError

_INT32_MAX = 2**31 - 1
TopicPartition = tuple[str, int]


def requested_partitions(p: Payload) -> list[TopicPartition] | None:
    """``topic_partitions`` of an ELECT_LEADERS request; None = every partition."""
    raw = p.raw("topic_partitions", None)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequestError("topic_partitions must be a list or nil")
    out: list[TopicPartition] = []
    for item in raw:
        tp = Payload(item)
        name = tp.text("topic")
        for index in tp.array("partitions"):
            if type(index) is not int or index < 0:
                raise InvalidRequestError("partitions must be non-negative integers")
            out.append((name, index))
    return list(dict.fromkeys(out))


class ElectLeadersHandler:
    def __init__(self, admin: TopicAdmin, requests: AdminRequests) -> None:
        self.admin = admin
        self.requests = requests

    async def __call__(self, p: Payload) -> dict[str, Any]:
        election_type = p.integer("election_type", 0, lo=0, hi=1)
        if election_type != 0:
            raise InvalidRequestError("only preferred-replica elections (type 0) are supported")
        timeout = p.integer("timeout_ms", 30_000, lo=0, hi=_INT32_MAX) / 1000.0
        cache = self.admin.cache
        asked = requested_partitions(p)
        partitions = all_partitions(cache) if asked is None else asked
        outcome: dict[TopicPartition, ServerError | None] = {}
        eligible: list[TopicPartition] = []
        stopping = self.requests.shutting_down
        for name, index in partitions:
            status = preferred_status(cache, name, index, stopping)
            if status is Preferred.UNKNOWN:
                outcome[(name, index)] = UnknownTopicOrPartitionError(
                    f"no partition {name}-{index}"
                )
            elif status is Preferred.ALREADY:
                outcome[(name, index)] = ElectionNotNeededError(
                    f"{name}-{index} is led by its preferred replica already"
                )
            elif status is Preferred.UNAVAILABLE:
                outcome[(name, index)] = PreferredLeaderNotAvailableError(
                    f"the preferred replica of {name}-{index} is not alive and in sync"
                )
            else:
                eligible.append((name, index))
        if eligible:
            await self.admin.zk.create(
                f"{PREFERRED_ELECTION}/{ELECTION_PREFIX}",
                encode_election(eligible),
                sequential=True,
                make_parents=True,
            )

            def done() -> bool:
                return all(_led_by_preferred(cache, tp) for tp in eligible)

            await self.admin.wait_until(done, timeout)
            for tp in eligible:
                outcome[tp] = (
                    None
                    if _led_by_preferred(cache, tp)
                    else RequestTimedOutError(
                        f"{tp[0]}-{tp[1]}: the election is requested but not done yet"
                    )
                )
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (name, index), error in outcome.items():
            by_topic.setdefault(name, []).append(
                {
                    "partition": index,
                    "error_code": 0 if error is None else error.code,
                    "error_message": None if error is None else error.message,
                }
            )
        return {"topics": [{"topic": t, "partitions": parts} for t, parts in by_topic.items()]}


def _led_by_preferred(cache: MetadataCache, tp: TopicPartition) -> bool:
    topic = cache.topic(tp[0])
    if topic is None:
        return False
    replicas = topic.replicas(tp[1])
    return bool(replicas) and topic.leader(tp[1]) == replicas[0]
