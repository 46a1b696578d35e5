"""The clients against a real broker process (single node, embedded coordinator).

One broker serves the whole module; each test uses its own topics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from client import (
    Admin,
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    Consumer,
    ConsumerRecord,
    NoOffsetForPartitionError,
    Producer,
    TopicPartition,
)
from client.partitioner import partition_for_key
from client.protocol import (
    InvalidConfigError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from tests.client.proxy import proxy_thread
from tests.procs import BROKER_READY, ServerProcess, broker_argv


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("client-e2e-broker")
    proc = ServerProcess(broker_argv(data, "--num-partitions", "1"), ready=BROKER_READY)
    proc.start()
    try:
        yield proc.address
    finally:
        proc.stop()


def consume_all(
    address: str, partitions: list[TopicPartition], count: int, timeout: float = 20.0, **kw: object
) -> list[ConsumerRecord]:
    with Consumer(address, auto_offset_reset="earliest", **kw) as consumer:  # type: ignore[arg-type]
        consumer.assign(partitions)
        out: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            out.extend(consumer.poll(timeout=0.5, max_records=10_000))
        # Nothing beyond what we expect.
        out.extend(consumer.poll(timeout=0.2))
        return out


def test_order_per_partition_and_key_placement(broker: str) -> None:
    with Admin(broker) as admin:
        admin.create_topic("orders", partitions=3)
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    with Producer(broker, linger_ms=2, batch_size=16 * 1024) as producer:
        futures = []
        for i in range(3000):
            key = b"user-%d" % (i % 50)
            value = b"%s:%d" % (key, i)
            futures.append((producer.send("orders", value, key=key), key, value))
        producer.flush()
        for future, key, value in futures:
            meta = future.result(timeout=10)
            # Kafka's default partitioner formula: the same key, the same partition.
            assert meta.partition == partition_for_key(key, 3)
            sent[meta.partition].append(value)
    records = consume_all(broker, [TopicPartition("orders", p) for p in range(3)], 3000)
    assert len(records) == 3000
    for p in range(3):
        got = [r for r in records if r.partition == p]
        assert [r.value for r in got] == sent[p]
        assert [r.offset for r in got] == list(range(len(got)))
    placement: dict[bytes, set[int]] = {}
    for r in records:
        assert r.key is not None
        placement.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in placement.values())


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks_levels(broker: str, acks: int | str) -> None:
    topic = f"acks-{acks}"
    with Producer(broker, acks=acks, linger_ms=1) as producer:
        futures = [producer.send(topic, b"%d" % i) for i in range(300)]
        producer.flush()
        metas = [f.result(timeout=10) for f in futures]
    if acks == 0:
        assert {m.offset for m in metas} == {-1}
    else:
        assert [m.offset for m in metas] == list(range(300))
    records = consume_all(broker, [TopicPartition(topic, 0)], 300)
    assert [r.value for r in records] == [b"%d" % i for i in range(300)]


@pytest.mark.parametrize("idempotent", [True, False])
def test_lost_produce_answer(broker: str, idempotent: bool) -> None:
    """The broker writes a batch but its answer is lost; the producer retries.
    Idempotent (the default): no duplicate. Without idempotence: Kafka's
    at-least-once duplicate, which shows the fault really happened."""
    topic = f"lost-answer-{idempotent}"
    settings: dict[str, object] = {"linger_ms": 0, "retry_backoff_ms": 20}
    if not idempotent:
        settings["acks"] = 1
    with proxy_thread(broker) as proxy:
        with Producer(proxy.address, **settings) as producer:  # type: ignore[arg-type]
            producer.send(topic, b"warm-up").result(timeout=20)  # metadata, producer id
            proxy.drop_produce_answers = 1
            meta = producer.send(topic, b"first").result(timeout=20)
            producer.send(topic, b"second").result(timeout=20)
        assert proxy.dropped == 1
    expected = 3 if idempotent else 4
    values = [r.value for r in consume_all(broker, [TopicPartition(topic, 0)], expected)]
    if idempotent:
        assert values == [b"warm-up", b"first", b"second"]
        assert meta.offset == 1
    else:
        assert values == [b"warm-up", b"first", b"first", b"second"]


def test_consumer_positions_and_resets(broker: str) -> None:
    topic = "positions"
    tp = TopicPartition(topic, 0)
    with Producer(broker) as producer:
        t0 = int(time.time() * 1000)
        for i in range(10):
            producer.send(topic, b"%d" % i, timestamp=t0 + i * 1000)
        producer.flush()
    with Consumer(broker, auto_offset_reset="latest") as latest:
        latest.assign([tp])
        assert latest.position(tp) == 10
        assert latest.poll(timeout=0.3) == []
        with Producer(broker) as producer:
            producer.send(topic, b"new").result(timeout=10)
        got: list[ConsumerRecord] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = latest.poll(timeout=0.5)
        assert [r.value for r in got] == [b"new"]
        assert latest.highwater(tp) == 11
    with Consumer(broker, auto_offset_reset="earliest") as c:
        c.assign([tp])
        assert c.position(tp) == 0
        c.seek(tp, 7)
        first = c.poll(timeout=5.0, max_records=1)
        assert first[0].offset == 7 and first[0].value == b"7"
        assert c.position(tp) == 8
        c.seek_to_end(tp)
        assert c.position(tp) == 11
        c.seek_to_beginning()
        assert c.poll(timeout=5.0, max_records=2)[1].offset == 1
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 11}
        found = c.offsets_for_times({tp: t0 + 4500})
        assert found[tp] is not None and found[tp].offset <= 5  # type: ignore[union-attr]
        assert c.offsets_for_times({tp: t0 + 10**9})[tp] is None
        c.seek(tp, 1000)  # past the end: auto_offset_reset applies
        again = c.poll(timeout=5.0, max_records=1)
        assert again and again[0].offset == 0
    with Consumer(broker, auto_offset_reset="none") as strict:
        strict.assign([tp])
        with pytest.raises(NoOffsetForPartitionError):
            strict.position(tp, timeout=5.0)


def test_admin_calls(broker: str) -> None:
    with Admin(broker) as admin:
        admin.create_topic("adm", partitions=2, config={"retention.ms": "3600000"})
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topic("adm")
        with pytest.raises(ValueError, match="partitions must be"):
            admin.create_topic("adm-bad", partitions=-5)  # refused locally
        with pytest.raises(InvalidReplicationFactorError):
            admin.create_topic("adm-bad", replication_factor=3)  # one broker only
        assert "adm" in admin.list_topics()
        desc = admin.describe_topic("adm")
        assert desc.num_partitions == 2
        for p in desc.partitions:
            assert p.leader >= 0 and p.leader in p.replicas and p.leader in p.isr
        configs = admin.describe_topic_config("adm")
        assert configs["retention.ms"].value == "3600000"
        admin.alter_topic_config("adm", set={"retention.ms": "60000"})
        assert admin.describe_topic_config("adm")["retention.ms"].value == "60000"
        admin.alter_topic_config("adm", delete=["retention.ms"])
        assert admin.describe_topic_config("adm")["retention.ms"].value != "60000"
        with pytest.raises(InvalidConfigError):
            admin.alter_topic_config("adm", set={"no.such.config": "1"})
        with Producer(broker) as producer:
            stamp = int(time.time() * 1000)
            for i in range(5):
                producer.send("adm", b"x", partition=1, timestamp=stamp + i)
            producer.flush()
        tp = TopicPartition("adm", 1)
        assert admin.list_offsets([tp], "earliest")[tp].offset == 0
        assert admin.list_offsets([tp], "latest")[tp].offset == 5
        assert admin.list_offsets({tp: stamp})[tp].offset == 0
        assert admin.list_offsets({tp: stamp + 10**8})[tp].offset == -1
        cluster = admin.describe_cluster()
        assert cluster.controller_id in {b.node_id for b in cluster.brokers}
        admin.delete_topic("adm")
        deadline = time.monotonic() + 20
        while "adm" in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "adm" not in admin.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.describe_topic("never-created")


def test_compression_round_trip(broker: str) -> None:
    with Producer(broker, compression="zlib", linger_ms=5) as producer:
        for i in range(500):
            producer.send("zipped", b"compressible " * 10 + b"%d" % i)
        producer.flush()
    records = consume_all(broker, [TopicPartition("zipped", 0)], 500)
    assert [r.value[-3:] for r in records][-1] == b"499"
    assert len(records) == 500


async def test_async_clients(broker: str) -> None:
    async with AsyncAdmin(broker) as admin:
        await admin.create_topic("async-topic", partitions=2)
    async with AsyncProducer(broker) as producer:
        meta = await producer.send("async-topic", b"a", key=b"k")
        futures = [
            await producer.enqueue("async-topic", b"%d" % i, partition=0) for i in range(100)
        ]
        await producer.flush()
        assert [(await f).offset for f in futures][-1] >= 99
    async with AsyncConsumer(broker, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("async-topic", meta.partition)])
        with trio.fail_after(20):
            async for record in consumer:
                if record.key == b"k":
                    assert record.value == b"a" and record.offset == meta.offset
                    break
