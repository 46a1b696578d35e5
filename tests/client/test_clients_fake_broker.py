"""Producer, consumer and admin against an in-memory broker with injected faults
(lost answers, retriable and fatal errors, silence)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest
import trio

from client import (
    Admin,
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    BufferExhaustedError,
    ClientClosedError,
    Consumer,
    ConsumerRecord,
    DeliveryTimeoutError,
    MetadataTimeoutError,
    Producer,
    RecordFuture,
    RecordMetadata,
    RecordTooLargeError,
    TopicPartition,
)
from client.partitioner import partition_for_key
from client.protocol import (
    ApiKey,
    MessageTooLargeError,
    NotLeaderOrFollowerError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from tests.client.fake_broker import FakeBroker, fake_broker_thread


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeBroker]:
    broker = FakeBroker(default_partitions=3)
    await nursery.start(broker.serve)
    yield broker


def addr(broker: FakeBroker) -> str:
    return f"127.0.0.1:{broker.port}"


def values_of(broker: FakeBroker, topic: str, partition: int) -> list[bytes]:
    from client.records import decode_batches

    log = broker.topics[topic][partition]
    data = b"".join(b for _, b in log.batches)
    return [r.value for _, recs in decode_batches(data) for r in recs if r.value is not None]


async def test_async_round_trip_keys_headers_and_order(fake: FakeBroker) -> None:
    async with AsyncProducer(addr(fake), linger_ms=2) as producer:
        meta = await producer.send("t", b"v0", key=b"user-1", headers={"h": "x"})
        assert meta.partition == partition_for_key(b"user-1", 3)
        futures = [await producer.enqueue("t", b"n%d" % i, partition=1) for i in range(500)]
        await producer.flush()
        offsets = [(await f).offset for f in futures]
        assert offsets == list(range(offsets[0], offsets[0] + 500))
        assert (await producer.partitions_for("t"))[2] == TopicPartition("t", 2)
    async with AsyncConsumer(addr(fake), auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("t", 1), TopicPartition("t", meta.partition)])
        got: list[ConsumerRecord] = []
        with trio.fail_after(10):
            while len(got) < 501:
                got.extend(await consumer.poll(timeout=1.0))
        keyed = [r for r in got if r.key == b"user-1"]
        assert keyed[0].headers == (("h", b"x"),) and keyed[0].offset == meta.offset
        ones = [r.value for r in got if r.partition == 1 and r.key is None]
        assert ones[-500:] == [b"n%d" % i for i in range(500)]


async def test_lost_answer_is_retried_without_duplicate(fake: FakeBroker) -> None:
    fake.create("t", 1)
    fake.drop_after_produce = 1  # the first produce is written, its answer lost
    async with AsyncProducer(addr(fake), linger_ms=0, retry_backoff_ms=10) as producer:
        meta = await producer.send("t", b"once")
        assert meta.offset == 0
        await producer.send("t", b"twice")
    assert values_of(fake, "t", 0) == [b"once", b"twice"]
    produces = [p for api, p in fake.requests if api == ApiKey.PRODUCE]
    assert len(produces) >= 3  # the lost one, its retry, and the second record


async def test_retriable_error_is_retried(fake: FakeBroker) -> None:
    fake.create("t", 1)
    fake.inject(
        ApiKey.PRODUCE, "t", 0, NotLeaderOrFollowerError.code, NotLeaderOrFollowerError.code
    )
    async with AsyncProducer(addr(fake), retry_backoff_ms=5) as producer:
        assert (await producer.send("t", b"x")).offset == 0
    metadata_calls = [p for api, p in fake.requests if api == ApiKey.METADATA]
    assert len(metadata_calls) >= 2  # the leader "moved": metadata was refreshed


async def test_fatal_error_fails_only_its_batch(fake: FakeBroker) -> None:
    fake.create("t", 1)
    fake.inject(ApiKey.PRODUCE, "t", 0, MessageTooLargeError.code)
    async with AsyncProducer(addr(fake)) as producer:
        with pytest.raises(MessageTooLargeError):
            await producer.send("t", b"too big")
        # A new epoch restarts the sequence numbers: later records still go through.
        assert (await producer.send("t", b"fine")).offset == 0
    inits = [p for api, p in fake.requests if api == ApiKey.INIT_PRODUCER_ID]
    assert len(inits) == 2 and inits[1]["producer_id"] >= 0


async def test_acks_zero_completes_without_offsets(fake: FakeBroker) -> None:
    fake.create("t", 1)
    async with AsyncProducer(addr(fake), acks=0) as producer:
        meta = await producer.send("t", b"fire")
        assert meta.offset == -1 and meta.partition == 0
        for i in range(20):
            await producer.enqueue("t", b"%d" % i)
        await producer.flush()
    with trio.fail_after(5):
        while len(values_of(fake, "t", 0)) < 21:
            await trio.sleep(0.01)


async def test_silent_broker_gives_buffer_and_delivery_timeouts(fake: FakeBroker) -> None:
    fake.create("t", 1)
    fake.hold_produce = True
    async with AsyncProducer(
        addr(fake),
        buffer_memory=4096,
        batch_size=1024,
        max_block_ms=200,
        delivery_timeout_ms=300,
        request_timeout_ms=200,
        retry_backoff_ms=20,
    ) as producer:
        first = await producer.enqueue("t", b"x" * 900)
        with pytest.raises(BufferExhaustedError):
            for _ in range(10):
                await producer.enqueue("t", b"y" * 900)
        with pytest.raises(DeliveryTimeoutError), trio.fail_after(10):
            await first


async def test_unknown_topic_times_out_and_bad_arguments_fail_fast(fake: FakeBroker) -> None:
    fake.auto_create = False
    fake.create("t", 2)
    async with AsyncProducer(addr(fake), max_block_ms=150) as producer:
        with pytest.raises(MetadataTimeoutError, match="nope"):
            await producer.send("nope", b"x")
        before = len(fake.requests)
        with pytest.raises(TypeError, match="not bytes"):
            await producer.send("t", "text")
        with pytest.raises(ValueError, match="partition 5 does not exist"):
            await producer.send("t", b"x", partition=5)
        with pytest.raises(TypeError):
            await producer.send("t", b"x", headers=[("h", 1)])
        with pytest.raises(TypeError):
            await producer.send("t", b"x", timestamp=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await producer.send(3, b"x")  # type: ignore[arg-type]
        with pytest.raises(RecordTooLargeError):
            await producer.send("t", b"x" * (9 * 1024 * 1024))
        assert not [api for api, _ in fake.requests[before:] if api == ApiKey.PRODUCE]
    with pytest.raises(ClientClosedError):
        await producer.send("t", b"late")


async def test_serializers_and_custom_partitioner(fake: FakeBroker) -> None:
    async with AsyncProducer(
        addr(fake),
        key_serializer="str",
        value_serializer="json",
        partitioner=lambda topic, key, n: n - 1,
    ) as producer:
        meta = await producer.send("j", {"a": [1, 2]}, key="k")
        assert meta.partition == 2
    async with AsyncConsumer(
        addr(fake), auto_offset_reset="earliest", key_deserializer="str", value_deserializer="json"
    ) as consumer:
        consumer.assign([TopicPartition("j", 2)])
        with trio.fail_after(5):
            records: list[ConsumerRecord] = []
            while not records:
                records = await consumer.poll(timeout=1.0)
        assert records[0].key == "k" and records[0].value == {"a": [1, 2]}


async def test_async_admin(fake: FakeBroker) -> None:
    async with AsyncAdmin(addr(fake)) as admin:
        await admin.create_topic("a", partitions=2, config={"retention.ms": 1000})
        with pytest.raises(TopicAlreadyExistsError):
            await admin.create_topic("a")
        with pytest.raises(ValueError, match="illegal topic name"):
            await admin.create_topic("bad name")
        assert "a" in await admin.list_topics()
        desc = await admin.describe_topic("a")
        assert desc.num_partitions == 2 and desc.partitions[1].leader == 0
        assert desc.partitions[0].replicas == (0,) and desc.partitions[0].isr == (0,)
        await admin.alter_topic_config(
            "a", set={"cleanup.policy": "compact"}, delete=["retention.ms"]
        )
        configs = await admin.describe_topic_config("a")
        assert configs["cleanup.policy"].value == "compact" and "retention.ms" not in configs
        offsets = await admin.list_offsets([TopicPartition("a", 0)], "earliest")
        assert offsets[TopicPartition("a", 0)].offset == 0
        cluster = await admin.describe_cluster()
        assert cluster.controller_id == 0 and cluster.brokers[0].node_id == 0
        await admin.delete_topic("a")
        with pytest.raises(UnknownTopicOrPartitionError):
            await admin.delete_topic("a")
        with pytest.raises(UnknownTopicOrPartitionError):
            await admin.describe_topic("a")


def test_blocking_producer_consumer_admin() -> None:
    with fake_broker_thread(default_partitions=2) as fake:
        address = addr(fake)
        with Admin(address) as admin:
            admin.create_topic("b", partitions=2)
            assert (
                admin.list_offsets({TopicPartition("b", 1): "latest"})[
                    TopicPartition("b", 1)
                ].offset
                == 0
            )
        done = threading.Event()
        seen: list[RecordMetadata] = []
        with Producer(address, linger_ms=1) as producer:
            f = producer.send("b", b"hello", partition=1)

            def on_done(fut: RecordFuture) -> None:
                seen.append(fut.result())
                done.set()

            f.add_done_callback(on_done)
            assert f.result(timeout=10).offset == 0
            assert done.wait(5) and seen[0].partition == 1
            for i in range(1000):
                producer.send("b", b"%d" % i, key=b"%d" % (i % 7))
            producer.flush(timeout=10)
            assert len(producer.partitions_for("b")) == 2
        assert producer.closed
        with pytest.raises(ClientClosedError):
            producer.send("b", b"after close")
        with Consumer(address, auto_offset_reset="earliest") as consumer:
            consumer.assign([("b", 0), ("b", 1)])
            got: list[ConsumerRecord] = []
            while len(got) < 1001:
                got.extend(consumer.poll(timeout=5.0))
            assert consumer.position(("b", 1)) == len([r for r in got if r.partition == 1])
            consumer.seek_to_beginning(TopicPartition("b", 1))
            assert consumer.position(("b", 1)) == 0
            consumer.seek(("b", 1), 1)
            again = consumer.poll(timeout=5.0, max_records=1)
            assert again[0].offset == 1 and again[0].partition == 1
            assert consumer.assignment() == {TopicPartition("b", 0), TopicPartition("b", 1)}
            consumer.pause(("b", 0))
            assert consumer.paused() == {TopicPartition("b", 0)}
            consumer.resume(("b", 0))
        with pytest.raises(ClientClosedError):
            consumer.poll()


async def test_consumer_fetch_errors(fake: FakeBroker) -> None:
    from client.protocol import OffsetOutOfRangeError

    fake.create("f", 1)
    async with AsyncProducer(addr(fake)) as producer:
        for i in range(3):
            await producer.send("f", b"%d" % i)
    tp = TopicPartition("f", 0)
    fake.inject(ApiKey.FETCH, "f", 0, NotLeaderOrFollowerError.code)
    async with AsyncConsumer(addr(fake), auto_offset_reset="earliest", retry_backoff_ms=5) as c:
        c.assign([tp])
        got: list[ConsumerRecord] = []
        with trio.fail_after(5):
            while len(got) < 3:
                got.extend(await c.poll(timeout=1.0))
        assert [r.value for r in got] == [b"0", b"1", b"2"]
        assert c.highwater(tp) == 3 and await c.position(tp) == 3
    async with AsyncConsumer(addr(fake), auto_offset_reset="none") as strict:
        strict.assign([tp])
        strict.seek(tp, 10)  # past the end: with "none" the error reaches the caller
        with pytest.raises(OffsetOutOfRangeError), trio.fail_after(5):
            while True:
                await strict.poll(timeout=1.0)
        strict.seek(tp, 1)
        with trio.fail_after(5):
            records: list[ConsumerRecord] = []
            while not records:
                records = await strict.poll(timeout=1.0, max_records=1)
        assert records[0].offset == 1
