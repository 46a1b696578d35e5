"""OFFSET_FOR_LEADER_EPOCH: where a leader epoch ends in this leader's log (KIP-101/279).

A follower that starts following a (new) leader asks, for its latest leader
epoch, for the largest epoch of the leader's log not above it and the offset
where that epoch ends; it truncates its own log where the two diverge
(broker.replication.epochs). Only the current leader answers, and only a caller
that follows the same leader epoch: an older ``current_leader_epoch`` gets
FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH (this broker has not
learned of it yet — so it stops leading until its metadata catches up).
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.replica_manager import ReplicaManager
from client.protocol import FencedLeaderEpochError, UnknownLeaderEpochError
from client.wire import Payload, ServerError

_INT32_MAX = 2**31 - 1


class LeaderEpochsHandler:
    def __init__(self, replicas: ReplicaManager) -> None:
        self.replicas = replicas

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
        p.integer("replica_id", -1, lo=-1, hi=_INT32_MAX)
        out_topics: list[dict[str, Any]] = []
        for raw_topic in p.array("topics"):
            tp = Payload(raw_topic)
            name = tp.text("topic")
            out_parts: list[dict[str, Any]] = []
            out_topics.append({"topic": name, "partitions": out_parts})
            for raw_part in tp.array("partitions"):
                pp = Payload(raw_part)
                index = pp.integer("partition", lo=0, hi=_INT32_MAX)
                current = pp.integer("current_leader_epoch", -1, lo=-1, hi=_INT32_MAX)
                requested = pp.integer("leader_epoch", lo=-1, hi=_INT32_MAX)
                try:
                    epoch, end = self._lookup(name, index, current, requested)
                except ServerError as exc:
                    out_parts.append(
                        {
                            "partition": index,
                            "error_code": exc.code,
                            "error_message": exc.message,
                            "leader_epoch": -1,
                            "end_offset": -1,
                        }
                    )
                    continue
                out_parts.append(
                    {
                        "partition": index,
                        "error_code": 0,
                        "error_message": None,
                        "leader_epoch": epoch,
                        "end_offset": end,
                    }
                )
        return {"topics": out_topics}

    def _lookup(self, topic: str, index: int, current: int, requested: int) -> tuple[int, int]:
        partition = self.replicas.leader(topic, index)
        ours = partition.leader_epoch
        if current >= 0 and current != ours:
            if current < ours:
                raise FencedLeaderEpochError(f"{topic}-{index}: leader epoch {current} < {ours}")
            # The caller knows a newer epoch: this broker's view is stale, it steps down.
            self.replicas.saw_newer_epoch(partition, current)
            raise UnknownLeaderEpochError(f"{topic}-{index}: leader epoch {current} > {ours}")
        return partition.end_offset_for_epoch(requested)
