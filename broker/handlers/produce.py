"""PRODUCE: validate and append each partition's batches, then answer per the acks.

Runs inline in the connection's read loop, so pipelined produce requests append
in the order they were sent. Per request the work is: one header parse and one
CRC check per batch, one write per batch, one response map per partition — no
record is ever decoded.

- acks=0: no response at all; if a partition failed, the connection is closed
  (as Kafka does) so the producer notices and refreshes its metadata.
- acks=1: answered once the batches are in the leader's log (the page cache).
- acks=-1 (all): refused with NOT_ENOUGH_REPLICAS when the ISR is smaller than
  min.insync.replicas; otherwise answered once the high watermark passes the
  batches — every ISR member has them and, with the group-commit flush policy,
  the leader's fsync covers them (broker.replication.produce_acks) — or with
  REQUEST_TIMED_OUT after ``timeout_ms``.

A broker writes only while it holds its leadership lease
(broker.replication.lease): otherwise NOT_LEADER_OR_FOLLOWER, and the producer
retries after refreshing its metadata.
"""

from __future__ import annotations

import time
from typing import Any

from broker.committer import Committer
from broker.connection import ClientConnection
from broker.partition import Partition
from broker.replica_manager import ReplicaManager
from broker.topic_names import topic_name_problem
from client.protocol import (
    InvalidRequiredAcksError,
    InvalidTopicError,
    NotEnoughReplicasError,
    UnknownTopicOrPartitionError,
)
from client.wire import Payload, ServerError

_INT32_MAX = 2**31 - 1


class ProduceHandler:
    def __init__(self, replicas: ReplicaManager, committer: Committer) -> None:
        self.replicas = replicas
        self.committer = committer

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        acks = p.integer("acks")
        if acks not in (0, 1, -1):
            raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1, got {acks}")
        timeout_ms = p.integer("timeout_ms", 30_000, lo=0, hi=_INT32_MAX)
        topics = p.array("topics")
        now_ms = time.time_ns() // 1_000_000
        replicas = self.replicas
        touched: dict[Partition, None] = {}
        entries: list[tuple[Partition, int, dict[str, Any]]] = []
        out_topics: list[dict[str, Any]] = []
        failed = False
        try:
            for raw_topic in topics:
                tp = Payload(raw_topic)
                name = tp.text("topic")
                out_parts: list[dict[str, Any]] = []
                out_topics.append({"topic": name, "partitions": out_parts})
                for raw_part in tp.array("partitions"):
                    pp = Payload(raw_part)
                    index = pp.integer("partition")
                    records = pp.blob("records")
                    try:
                        partition = replicas.leader_for_write(name, index)
                        if (
                            acks == -1
                            and len(partition.isr) < partition.settings.min_insync_replicas
                        ):
                            raise NotEnoughReplicasError(
                                f"{name}-{index}: {len(partition.isr)} in-sync replica(s), "
                                f"min.insync.replicas is {partition.settings.min_insync_replicas}"
                            )
                        base, _ = partition.append(records, now_ms)
                    except UnknownTopicOrPartitionError as exc:
                        failed = True
                        problem = topic_name_problem(name)
                        error: ServerError = InvalidTopicError(problem) if problem else exc
                        out_parts.append(_error_entry(index, error))
                        continue
                    except ServerError as exc:
                        failed = True
                        out_parts.append(_error_entry(index, exc))
                        continue
                    touched[partition] = None
                    entry = {
                        "partition": index,
                        "error_code": 0,
                        "error_message": None,
                        "base_offset": base,
                        "log_append_time_ms": -1,
                        "log_start_offset": partition.log_start_offset,
                    }
                    out_parts.append(entry)
                    entries.append((partition, partition.log_end_offset, entry))
        finally:
            committer = self.committer
            for partition in touched:
                committer.appended(partition)
        if acks == 0:
            if failed:
                conn.close()
            return None
        response = {"topics": out_topics}
        if acks == -1 and entries:
            # Answered (now or later) by the acks=all purgatory.
            replicas.acks.wait(conn, xid, response, entries, timeout_ms)
            return None
        return response


def _error_entry(index: int, error: ServerError) -> dict[str, Any]:
    return {
        "partition": index,
        "error_code": error.code,
        "error_message": error.message,
        "base_offset": -1,
        "log_append_time_ms": -1,
        "log_start_offset": -1,
    }
