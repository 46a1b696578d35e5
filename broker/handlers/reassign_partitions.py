"""ALTER_PARTITION_REASSIGNMENTS: give partitions a new list of replicas.

For each partition the request names a target replica list (its first entry is
the new preferred leader). The broker checks it — the partition exists, the
list is non-empty, has no repeats and names registered brokers only
(INVALID_REPLICA_ASSIGNMENT otherwise), and no other reassignment of the
partition is under way (REASSIGNMENT_IN_PROGRESS) — and hands it to the
controller as ``/admin/reassign_partitions/<topic>-<p>``. The controller moves
the partition step by step (broker.replication.reassignment): the new replicas
copy the log, join the ISR, then the old ones leave. The answer waits, up to
``timeout_ms``, until the move is complete; after that it is REQUEST_TIMED_OUT
for the partitions still moving (they still complete, as Kafka's do).
"""

from __future__ import annotations

from typing import Any

from broker.replication.admin_znodes import (
    AdminRequests,
    encode_reassignment,
    reassignment_path,
)
from broker.replication.reassignment import validate_target
from broker.topic_admin import TopicAdmin
from client.protocol import (
    InvalidReplicaAssignmentError,
    ReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)
from client.wire import InvalidRequestError, Payload, RequestTimedOutError, ServerError
from coordinator.errors import NodeExistsError

_INT32_MAX = 2**31 - 1
TopicPartition = tuple[str, int]


class ReassignPartitionsHandler:
    def __init__(self, admin: TopicAdmin, requests: AdminRequests) -> None:
        self.admin = admin
        self.requests = requests

    async def __call__(self, p: Payload) -> dict[str, Any]:
        timeout = p.integer("timeout_ms", 30_000, lo=0, hi=_INT32_MAX) / 1000.0
        outcome: dict[TopicPartition, ServerError | None] = {}
        started: dict[TopicPartition, list[int]] = {}
        for raw_topic in p.array("topics"):
            topic_payload = Payload(raw_topic)
            name = topic_payload.text("topic")
            for raw_part in topic_payload.array("partitions"):
                pp = Payload(raw_part)
                index = pp.integer("partition", lo=0, hi=_INT32_MAX)
                replicas = pp.raw("replicas")
                if not isinstance(replicas, list) or not all(type(r) is int for r in replicas):
                    raise InvalidRequestError("replicas must be a list of broker ids")
                key = (name, index)
                try:
                    self._check(name, index, replicas)
                    await self.admin.zk.create(
                        reassignment_path(name, index),
                        encode_reassignment(replicas),
                        make_parents=True,
                    )
                except NodeExistsError:
                    outcome[key] = ReassignmentInProgressError(
                        f"{name}-{index} is being reassigned already"
                    )
                    continue
                except ServerError as exc:
                    outcome[key] = exc
                    continue
                started[key] = list(replicas)
                outcome[key] = None
        if started and timeout > 0:

            def done() -> bool:
                return all(self._finished(tp, target) for tp, target in started.items())

            await self.admin.wait_until(done, timeout)
            for tp, target in started.items():
                if not self._finished(tp, target):
                    outcome[tp] = RequestTimedOutError(
                        f"{tp[0]}-{tp[1]}: the reassignment is still in progress"
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

    def _check(self, name: str, index: int, replicas: list[int]) -> None:
        topic = self.admin.cache.topic(name)
        if topic is None or index not in topic.assignment.partitions:
            raise UnknownTopicOrPartitionError(f"no partition {name}-{index}")
        if (name, index) in self.requests.reassignments:
            raise ReassignmentInProgressError(f"{name}-{index} is being reassigned already")
        problem = validate_target(replicas, self.admin.cache.live_brokers())
        if problem is not None:
            raise InvalidReplicaAssignmentError(f"{name}-{index}: {problem}")

    def _finished(self, tp: TopicPartition, target: list[int]) -> bool:
        topic = self.admin.cache.topic(tp[0])
        return (
            topic is not None
            and topic.replicas(tp[1]) == target
            and tp not in self.requests.reassignments
        )
