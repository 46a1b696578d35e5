"""An in-memory broker speaking client.protocol, for client tests that need
deterministic fault injection (the real broker is tested end to end elsewhere).

It implements METADATA, PRODUCE (with idempotent-producer deduplication of the
last five batches, like the real broker), FETCH (with long polling),
LIST_OFFSETS, INIT_PRODUCER_ID, CREATE/DELETE_TOPICS and DESCRIBE/ALTER_CONFIGS.
Faults: ``errors`` queues error codes to answer for an api/partition,
``drop_after_produce`` closes the connection after a produce was applied but
before its answer went out (a lost response), and ``hold_produce`` swallows
produce requests without answering.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from client.protocol import ApiKey
from client.records import increment_sequence, parse_header, stamp_batch, validate_batch
from client.wire import FramedConnection, encode_response, parse_request


@dataclass
class PartitionLog:
    batches: list[tuple[int, bytes]] = field(default_factory=list)  # (base_offset, bytes)
    next_offset: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    # producer id -> (epoch, deque of (first_seq, last_seq, base_offset))
    producers: dict[int, tuple[int, deque[tuple[int, int, int]]]] = field(default_factory=dict)


class FakeBroker:
    """One broker (node 0) that is also the controller."""

    def __init__(self, default_partitions: int = 1, auto_create: bool = True) -> None:
        self.default_partitions = default_partitions
        self.auto_create = auto_create
        self.host = "127.0.0.1"
        self.port = 0
        self.topics: dict[str, list[PartitionLog]] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.errors: dict[tuple[int, str, int], deque[int]] = {}
        self.drop_after_produce = 0
        self.hold_produce = False
        self.requests: list[tuple[int, Any]] = []
        self.next_pid = 1000
        self.advertised_port: int | None = None

    # -- fault injection --------------------------------------------------------------------

    def inject(self, api: int, topic: str, partition: int, *codes: int) -> None:
        self.errors.setdefault((api, topic, partition), deque()).extend(codes)

    def _injected(self, api: int, topic: str, partition: int) -> int:
        q = self.errors.get((api, topic, partition))
        return q.popleft() if q else 0

    # -- server -----------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = FramedConnection(stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.writer)
            try:
                while True:
                    messages = await conn.receive()
                    if not messages:
                        break
                    for raw in messages:
                        req = parse_request(raw)
                        self.requests.append((req.api, req.payload))
                        if req.api == ApiKey.FETCH:
                            nursery.start_soon(self._fetch, conn, req.xid, req.payload)
                            continue
                        if req.api == ApiKey.PRODUCE and self.hold_produce:
                            continue  # a broker that never answers (nor writes)
                        payload = self._dispatch(req.api, req.payload)
                        if req.api == ApiKey.PRODUCE and self.drop_after_produce > 0:
                            self.drop_after_produce -= 1
                            await conn.aclose()
                            nursery.cancel_scope.cancel()
                            return
                        if req.xid != 0:
                            conn.send(encode_response(req.xid, 0, payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

    def _dispatch(self, api: int, p: Any) -> Any:
        if api == ApiKey.METADATA:
            return self._metadata(p)
        if api == ApiKey.PRODUCE:
            return self._produce(p)
        if api == ApiKey.LIST_OFFSETS:
            return self._list_offsets(p)
        if api == ApiKey.INIT_PRODUCER_ID:
            if p.get("producer_id", -1) >= 0:
                return {"producer_id": p["producer_id"], "producer_epoch": p["producer_epoch"] + 1}
            self.next_pid += 1
            return {"producer_id": self.next_pid, "producer_epoch": 0}
        if api == ApiKey.CREATE_TOPICS:
            out = []
            for t in p["topics"]:
                if t["name"] in self.topics:
                    out.append({"name": t["name"], "error_code": 136, "error_message": "exists"})
                    continue
                n = t["num_partitions"] if t["num_partitions"] > 0 else self.default_partitions
                self.create(t["name"], n)
                self.configs[t["name"]].update(t.get("configs") or {})
                out.append({"name": t["name"], "error_code": 0, "error_message": None})
            return {"topics": out}
        if api == ApiKey.DELETE_TOPICS:
            out = []
            for name in p["topics"]:
                code = 0 if self.topics.pop(name, None) is not None else 103
                out.append({"name": name, "error_code": code, "error_message": None})
            return {"topics": out}
        if api == ApiKey.DESCRIBE_CONFIGS:
            return {
                "topics": [
                    {
                        "name": name,
                        "error_code": 0 if name in self.topics else 103,
                        "error_message": None,
                        "configs": [
                            {
                                "name": k,
                                "value": v,
                                "is_default": False,
                                "read_only": False,
                                "doc": "",
                            }
                            for k, v in sorted(self.configs.get(name, {}).items())
                        ],
                    }
                    for name in p["topics"]
                ]
            }
        if api == ApiKey.ALTER_CONFIGS:
            out = []
            for t in p["topics"]:
                cfg = self.configs.get(t["name"])
                if cfg is None:
                    out.append({"name": t["name"], "error_code": 103, "error_message": None})
                    continue
                cfg.update(t.get("set") or {})
                for k in t.get("delete") or ():
                    cfg.pop(k, None)
                out.append({"name": t["name"], "error_code": 0, "error_message": None})
            return {"topics": out}
        raise ValueError(f"api {api}")

    def create(self, name: str, partitions: int) -> None:
        self.topics[name] = [PartitionLog() for _ in range(partitions)]
        self.configs.setdefault(name, {})

    def _metadata(self, p: Any) -> Any:
        names = p.get("topics")
        if names is None:
            names = sorted(self.topics)
        topics = []
        for name in names:
            if name not in self.topics and p.get("allow_auto_topic_creation") and self.auto_create:
                self.create(name, self.default_partitions)
            logs = self.topics.get(name)
            if logs is None:
                topics.append(
                    {
                        "name": name,
                        "error_code": 103,
                        "error_message": "unknown",
                        "internal": False,
                        "partitions": [],
                    }
                )
                continue
            topics.append(
                {
                    "name": name,
                    "error_code": 0,
                    "error_message": None,
                    "internal": False,
                    "partitions": [
                        {
                            "partition": i,
                            "error_code": 0,
                            "leader": 0,
                            "leader_epoch": 0,
                            "replicas": [0],
                            "isr": [0],
                        }
                        for i in range(len(logs))
                    ],
                }
            )
        return {
            "cluster_id": "fake",
            "controller_id": 0,
            "brokers": [
                {
                    "node_id": 0,
                    "host": self.host,
                    "port": self.advertised_port or self.port,
                    "rack": None,
                }
            ],
            "topics": topics,
        }

    def _produce(self, p: Any) -> Any:
        out = []
        for t in p["topics"]:
            parts = []
            for part in t["partitions"]:
                parts.append(self._append(t["topic"], part["partition"], part["records"]))
            out.append({"topic": t["topic"], "partitions": parts})
        return {"topics": out}

    def _append(self, topic: str, partition: int, data: bytes) -> dict[str, Any]:
        res: dict[str, Any] = {
            "partition": partition,
            "error_code": 0,
            "error_message": None,
            "base_offset": -1,
            "log_append_time_ms": -1,
            "log_start_offset": 0,
        }
        code = self._injected(ApiKey.PRODUCE, topic, partition)
        logs = self.topics.get(topic)
        if code == 0 and (logs is None or not 0 <= partition < len(logs)):
            code = 103
        if code:
            res["error_code"] = code
            return res
        assert logs is not None
        log = logs[partition]
        h = validate_batch(data)
        if h.producer_id >= 0:
            epoch, recent = log.producers.get(h.producer_id, (h.producer_epoch, deque(maxlen=5)))
            if h.producer_epoch > epoch:
                epoch, recent = h.producer_epoch, deque(maxlen=5)
            for first, last, base in recent:
                if first == h.base_sequence and last == h.last_sequence:
                    res["base_offset"] = base
                    return res
            if recent and h.base_sequence != increment_sequence(recent[-1][1], 1):
                res["error_code"] = 145
                return res
            recent.append((h.base_sequence, h.last_sequence, log.next_offset))
            log.producers[h.producer_id] = (epoch, recent)
        base = log.next_offset
        log.batches.append((base, stamp_batch(data, base, 0)))
        log.next_offset = base + h.last_offset_delta + 1
        res["base_offset"] = base
        log.changed.set()
        log.changed = trio.Event()
        return res

    def _list_offsets(self, p: Any) -> Any:
        out = []
        for t in p["topics"]:
            parts = []
            for part in t["partitions"]:
                logs = self.topics.get(t["topic"])
                if logs is None or not 0 <= part["partition"] < len(logs):
                    parts.append(
                        {
                            "partition": part["partition"],
                            "error_code": 103,
                            "error_message": None,
                            "offset": -1,
                            "timestamp": -1,
                        }
                    )
                    continue
                log = logs[part["partition"]]
                ts = part["timestamp"]
                if ts == -1:
                    off = log.next_offset
                elif ts == -2:
                    off = 0
                else:
                    off = -1
                    for base, data in log.batches:
                        if parse_header(data).max_timestamp >= ts:
                            off = base
                            break
                parts.append(
                    {
                        "partition": part["partition"],
                        "error_code": 0,
                        "error_message": None,
                        "offset": off,
                        "timestamp": -1,
                    }
                )
            out.append({"topic": t["topic"], "partitions": parts})
        return {"topics": out}

    async def _fetch(self, conn: FramedConnection, xid: int, p: Any) -> None:
        deadline = trio.current_time() + p["max_wait_ms"] / 1000.0
        while True:
            out, total, events = self._fetch_once(p)
            if total >= max(1, p["min_bytes"]) or trio.current_time() >= deadline or not events:
                break
            with trio.move_on_at(deadline):
                async with trio.open_nursery() as n:
                    for ev in events:

                        async def waiter(ev: trio.Event = ev) -> None:
                            await ev.wait()
                            n.cancel_scope.cancel()

                        n.start_soon(waiter)
        conn.send(encode_response(xid, 0, {"topics": out}))

    def _fetch_once(self, p: Any) -> tuple[list[Any], int, list[trio.Event]]:
        out = []
        total = 0
        events = []
        for t in p["topics"]:
            parts = []
            for part in t["partitions"]:
                logs = self.topics.get(t["topic"])
                res: dict[str, Any] = {
                    "partition": part["partition"],
                    "error_code": 0,
                    "error_message": None,
                    "high_watermark": 0,
                    "log_start_offset": 0,
                    "records": b"",
                }
                code = self._injected(ApiKey.FETCH, t["topic"], part["partition"])
                if code:
                    res["error_code"] = code
                elif logs is None or not 0 <= part["partition"] < len(logs):
                    res["error_code"] = 103
                else:
                    log = logs[part["partition"]]
                    off = part["fetch_offset"]
                    res["high_watermark"] = log.next_offset
                    if off > log.next_offset or off < 0:
                        res["error_code"] = 101
                    else:
                        chunks: list[bytes] = []
                        size = 0
                        for _base, data in log.batches:
                            if parse_header(data).next_offset <= off:
                                continue
                            if chunks and size + len(data) > part["partition_max_bytes"]:
                                break
                            chunks.append(data)
                            size += len(data)
                        res["records"] = b"".join(chunks)
                        total += size
                        events.append(log.changed)
                parts.append(res)
            out.append({"topic": t["topic"], "partitions": parts})
        return out, total, events


@contextmanager
def fake_broker_thread(**kwargs: Any) -> Iterator[FakeBroker]:
    """Run a FakeBroker in a background thread (for tests of the blocking clients)."""
    broker = FakeBroker(**kwargs)
    ready = threading.Event()
    token_box: list[Any] = []
    stop_box: list[trio.Event] = []

    async def main() -> None:
        stop = trio.Event()
        stop_box.append(stop)
        token_box.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.serve)
            ready.set()
            await stop.wait()
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield broker
    finally:
        token_box[0].run_sync_soon(stop_box[0].set)
        thread.join(10)
