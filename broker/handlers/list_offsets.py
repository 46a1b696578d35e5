"""LIST_OFFSETS: the log start, the high watermark, or the first offset at a timestamp.

``timestamp`` -1 (latest) answers the high watermark — the offset the next
visible record will get, as Kafka's read_uncommitted consumers see it; -2
(earliest) the log start. Any other timestamp answers the base offset of the
first batch whose max timestamp is at or after it, with that batch's max
timestamp (the broker does not decode records to find the exact one), or
offset -1 when no visible batch is that recent.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.replica_manager import ReplicaManager
from client.protocol import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from client.records import HEADER_SIZE, parse_header
from client.wire import InvalidRequestError, Payload, ServerError

_INT64_MAX = 2**63 - 1


class ListOffsetsHandler:
    def __init__(self, replicas: ReplicaManager) -> None:
        self.replicas = replicas

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
        out_topics: list[dict[str, Any]] = []
        for raw_topic in p.array("topics"):
            tp = Payload(raw_topic)
            name = tp.text("topic")
            out_parts: list[dict[str, Any]] = []
            out_topics.append({"topic": name, "partitions": out_parts})
            for raw_part in tp.array("partitions"):
                pp = Payload(raw_part)
                index = pp.integer("partition")
                timestamp = pp.integer("timestamp", lo=-2, hi=_INT64_MAX)
                try:
                    offset, found_ts = self._lookup(name, index, timestamp)
                except ServerError as exc:
                    out_parts.append(
                        {
                            "partition": index,
                            "error_code": exc.code,
                            "error_message": exc.message,
                            "offset": -1,
                            "timestamp": -1,
                        }
                    )
                    continue
                out_parts.append(
                    {
                        "partition": index,
                        "error_code": 0,
                        "error_message": None,
                        "offset": offset,
                        "timestamp": found_ts,
                    }
                )
        return {"topics": out_topics}

    def _lookup(self, topic: str, index: int, timestamp: int) -> tuple[int, int]:
        partition = self.replicas.leader(topic, index)
        if timestamp == LATEST_TIMESTAMP:
            return partition.high_watermark, -1
        if timestamp == EARLIEST_TIMESTAMP:
            return partition.log_start_offset, -1
        if timestamp < 0:
            raise InvalidRequestError(f"timestamp {timestamp} is neither -1, -2 nor >= 0")
        offset = partition.log.offset_for_timestamp(timestamp)
        if offset is None or offset >= partition.high_watermark:
            return -1, -1
        data = partition.read(offset, HEADER_SIZE)
        if len(data) < HEADER_SIZE:
            return -1, -1
        return offset, parse_header(data).max_timestamp
