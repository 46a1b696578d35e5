"""The record accumulator (sans-IO): batching, linger, buffer memory, futures."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from client.accumulator import (
    RECORD_OVERHEAD,
    ProducerBatch,
    RecordAccumulator,
    RecordFuture,
    record_size,
)
from client.partitioner import StickyPartitioner
from client.types import RecordMetadata


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    batch_size: int = 1000, linger: float = 0.005, buffer_memory: int = 10_000
) -> tuple[RecordAccumulator, FakeClock, list[str]]:
    clock = FakeClock()
    woken: list[str] = []
    acc = RecordAccumulator(
        batch_size=batch_size,
        linger=linger,
        buffer_memory=buffer_memory,
        delivery_timeout=120.0,
        clock=clock,
        sticky=StickyPartitioner(),
        partition_counts={"t": 2},
        on_ready=lambda: woken.append("ready"),
    )
    return acc, clock, woken


def add(
    acc: RecordAccumulator, value: bytes, partition: int = 0, ts: int | None = None
) -> RecordFuture:
    size = record_size(None, value, ())
    fut = acc.append("t", partition, None, value, (), ts, size)
    assert fut is not None
    return fut


def test_record_size_counts_key_value_headers() -> None:
    assert record_size(None, None, ()) == RECORD_OVERHEAD
    assert record_size(b"k", b"vv", [("h", b"x")]) == RECORD_OVERHEAD + 3 + 1 + 1 + 4


def test_batch_closes_when_the_next_record_does_not_fit() -> None:
    acc, clock, _ = make(batch_size=3 * (RECORD_OVERHEAD + 10))
    futs = [add(acc, b"x" * 10) for _ in range(4)]
    ready, _ = acc.drain(clock.now)
    assert len(ready) == 1 and ready[0].record_count == 3
    assert futs[3].batch is not futs[0].batch
    assert [f.index_in_batch for f in futs] == [0, 1, 2, 0]


def test_linger_closes_an_open_batch_and_reports_its_deadline() -> None:
    acc, clock, _ = make(linger=0.005)
    add(acc, b"a")
    ready, due = acc.drain(clock.now)
    assert ready == [] and due == pytest.approx(100.005)
    clock.now += 0.005
    ready, due = acc.drain(clock.now)
    assert len(ready) == 1 and due == float("inf")


def test_lingered_batch_keeps_filling_while_its_partition_is_busy() -> None:
    acc, clock, _ = make(linger=0.0)
    add(acc, b"a")
    ready, _ = acc.drain(clock.now, can_send=lambda b: False)
    assert ready == []
    add(acc, b"b")  # lands in the same, still open batch
    ready, _ = acc.drain(clock.now, can_send=lambda b: True)
    assert [b.record_count for b in ready] == [2]
    add(acc, b"c")
    ready, _ = acc.drain(clock.now, everything=True, can_send=lambda b: False)
    assert [b.record_count for b in ready] == [1]  # flush overrides


def test_flush_closes_everything_and_drain_keeps_close_order() -> None:
    acc, clock, _ = make()
    add(acc, b"p0", 0)
    add(acc, b"p1", 1)
    acc.close_all()
    ready, _ = acc.drain(clock.now)
    assert [(b.partition, b.record_count) for b in ready] == [(0, 1), (1, 1)]


def test_buffer_memory_reserves_a_batch_and_refuses_when_full() -> None:
    acc, clock, _ = make(batch_size=100, buffer_memory=250)
    add(acc, b"a", 0)
    add(acc, b"b", 1)
    assert acc.used == 200  # two open batches reserve batch_size each
    # A third partition's batch does not fit.
    assert acc.append("u", 0, None, b"c", (), None, RECORD_OVERHEAD + 1) is None
    # Closing shrinks the reservations to the actual record bytes.
    acc.close_all()
    assert acc.used == 2 * (RECORD_OVERHEAD + 1)
    assert acc.has_room(RECORD_OVERHEAD + 1)
    ready, _ = acc.drain(clock.now)
    for batch in ready:
        batch.complete(0)
        acc.release(batch)
    assert acc.used == 0 and not acc.has_incomplete()


def test_wait_for_space_wakes_when_a_batch_is_released() -> None:
    acc, clock, _ = make(batch_size=100, buffer_memory=150)
    add(acc, b"a", 0)
    acc.close_all()
    [batch], _ = acc.drain(clock.now)
    acc.used = 150  # pretend the buffer is full
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(acc.wait_for_space(100, 5.0)))
    t.start()
    acc.used = batch.reserved
    batch.complete(0)
    acc.release(batch)
    t.join(5)
    assert got == [True]
    assert acc.wait_for_space(10_000, 0.01) is True  # nothing buffered: always room


def test_on_ready_called_only_when_the_sender_parked() -> None:
    acc, clock, woken = make(batch_size=2 * (RECORD_OVERHEAD + 1))
    add(acc, b"a")
    assert woken == []
    acc.drain(clock.now)
    assert acc.park() is True
    add(acc, b"b")  # fills the batch but does not close it yet
    add(acc, b"c")  # closes the full batch -> wakes the parked sender
    assert woken == ["ready"]
    assert acc.park() is False  # a batch is waiting: do not sleep


def test_park_refuses_after_a_batch_opened_since_the_last_drain() -> None:
    acc, clock, _ = make()
    acc.drain(clock.now)
    add(acc, b"a")
    assert acc.park() is False  # the sender has not seen this batch's linger deadline
    acc.drain(clock.now)
    assert acc.park() is True


def test_future_metadata_callbacks_and_errors() -> None:
    acc, _clock, _ = make()
    f0 = add(acc, b"a", ts=1_000)
    f1 = add(acc, b"b", ts=1_007)
    seen: list[RecordMetadata] = []
    f1.add_done_callback(lambda f: seen.append(f.result()))
    assert not f0.done() and not f0.cancel()
    with pytest.raises(TimeoutError):
        f0.result(timeout=0.01)
    batch = f0.batch
    assert batch.max_timestamp == 1_007
    batch.complete(base_offset=40)
    assert f0.result() == RecordMetadata("t", 0, 40, 1_000)
    assert seen == [RecordMetadata("t", 0, 41, 1_007)]
    late: list[int] = []
    f0.add_done_callback(lambda f: late.append(f.result().offset))
    assert late == [40]
    g = add(acc, b"c", partition=1)
    g.batch.complete(-1, -1, ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        g.result()
    assert isinstance(g.exception(), ValueError)


def test_log_append_time_replaces_create_time() -> None:
    acc, _, _ = make()
    f = add(acc, b"a", ts=5)
    f.batch.complete(base_offset=0, log_append_time=99)
    assert f.result().timestamp == 99


def test_abort_incomplete_fails_everything() -> None:
    acc, _, _ = make()
    futs = [add(acc, b"a", 0), add(acc, b"b", 1)]
    acc.close()
    assert len(acc.abort_incomplete(RuntimeError("closed"))) == 2
    assert all(isinstance(f.exception(), RuntimeError) for f in futs)
    assert acc.used == 0


class AccumulatorMachine(RuleBasedStateMachine):
    """Random appends, drains, clock ticks and completions against a model: every
    record ends up in exactly one batch, in append order per partition; batches
    respect batch_size; the buffer accounting returns to zero."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_size = 200
        self.acc, self.clock, _ = make(batch_size=self.batch_size, linger=0.01, buffer_memory=2000)
        self.appended: dict[int, list[bytes]] = {0: [], 1: []}
        self.drained: list[ProducerBatch] = []
        self.futures: list[tuple[RecordFuture, bytes]] = []

    @rule(partition=st.integers(0, 1), n=st.integers(0, 120))
    def append(self, partition: int, n: int) -> None:
        value = bytes([65 + len(self.futures) % 26]) * n + str(len(self.futures)).encode()
        size = record_size(None, value, ())
        before = self.acc.used
        fut = self.acc.append("t", partition, None, value, (), None, size)
        if fut is None:
            assert before + self.batch_size > 2000  # refused only when really full
            return
        self.appended[partition].append(value)
        self.futures.append((fut, value))

    @rule(dt=st.floats(0, 0.02))
    def tick(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def drain(self) -> None:
        ready, due = self.acc.drain(self.clock.now)
        for batch in ready:
            assert batch.size <= self.batch_size or batch.record_count == 1
        self.drained.extend(ready)
        assert due > self.clock.now

    @precondition(lambda self: any(not b.done for b in self.drained))
    @rule(data=st.data())
    def complete_one(self, data: st.DataObject) -> None:
        pending = [b for b in self.drained if not b.done]
        batch = data.draw(st.sampled_from(pending))
        batch.complete(0)
        self.acc.release(batch)

    @rule()
    def flush(self) -> None:
        self.acc.close_all()

    @invariant()
    def accounting(self) -> None:
        incomplete = self.acc.incomplete()
        assert self.acc.used == sum(b.reserved for b in incomplete)
        assert self.acc.used >= 0

    def teardown(self) -> None:
        self.acc.close_all()
        ready, _ = self.acc.drain(self.clock.now)
        self.drained.extend(ready)
        for p in (0, 1):
            values = [r[2] for b in self.drained if b.partition == p for r in b.records]
            assert values == self.appended[p]
        for fut, value in self.futures:
            assert fut.batch.records[fut.index_in_batch][2] == value
        for batch in self.drained:
            if not batch.done:
                batch.complete(0)
            self.acc.release(batch)
        assert self.acc.used == 0


TestAccumulatorMachine = AccumulatorMachine.TestCase
TestAccumulatorMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_sender_encoder_matches_the_record_format() -> None:
    from client.records import COMPRESSION_NONE, COMPRESSION_ZLIB, encode_batch_raw
    from client.sender import BatchEncoder

    acc, _, _ = make()
    for i in range(5):
        acc.append("t", 0, b"k%d" % i, b"v" * i, [["h", b"x"]] if i % 2 else (), 1000 + i, 20)
    [batch], _ = acc.drain(1e9, everything=True)
    batch.producer_id, batch.producer_epoch, batch.base_sequence = 42, 3, 17
    for codec in (COMPRESSION_NONE, COMPRESSION_ZLIB):
        expected = encode_batch_raw(
            batch.records,
            base_timestamp=batch.base_timestamp,
            max_timestamp=batch.max_timestamp,
            compression=codec,
            producer_id=42,
            producer_epoch=3,
            base_sequence=17,
        )
        encoder = BatchEncoder(codec)
        assert encoder.encode(batch) == expected
        assert encoder.encode(batch) == expected  # the reused packer resets
