"""Sequence numbers, retries and ordering of the producer (sans-IO DeliveryTracker)."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from client.accumulator import ProducerBatch
from client.delivery import DeliveryTracker, backoff_delay
from client.errors import DeliveryTimeoutError
from client.protocol import (
    MessageTooLargeError,
    NotLeaderOrFollowerError,
    OutOfOrderSequenceError,
)
from client.records import increment_sequence
from client.types import TopicPartition
from client.wire import ConnectionLostError


def batch(partition: int, n: int, tag: str = "", created: float = 0.0) -> ProducerBatch:
    b = ProducerBatch("t", partition, 0, created)
    for i in range(n):
        b.records.append((0, None, f"{tag}{i}".encode(), ()))
        b.size += 10
    return b


def tracker(**kw: object) -> DeliveryTracker:
    args: dict[str, object] = dict(
        idempotent=True,
        max_in_flight=5,
        retries=100,
        retry_backoff=0.1,
        retry_backoff_max=1.0,
        rng=random.Random(0),
    )
    args.update(kw)
    t = DeliveryTracker(**args)  # type: ignore[arg-type]
    t.set_producer_id(7, 0)
    return t


def leader0(tp: TopicPartition) -> int | None:
    return 0


def always(node: int) -> bool:
    return True


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.1, 1.0, rng) for a in range(1, 8)]
    assert 0.08 <= delays[0] <= 0.12
    assert 0.16 <= delays[1] <= 0.24
    assert all(0.8 <= d <= 1.2 for d in delays[4:])
    assert backoff_delay(3, 0.0, 1.0, rng) == 0.0


def test_first_batch_of_an_epoch_goes_alone() -> None:
    t = tracker()
    b0, b1 = batch(0, 1), batch(0, 1)
    t.add([b0, b1])
    assert t.ready(0.0, leader0, always)[0] == {0: [b0]}
    assert t.ready(0.0, leader0, always)[0] == {}  # no pipelining before the first ack
    t.on_success(b0, 0, -1)
    assert t.ready(0.0, leader0, always)[0] == {0: [b1]}


def test_sequences_are_assigned_on_first_send_and_kept_for_retries() -> None:
    t = tracker()
    b0, b1, b2 = batch(0, 1), batch(0, 3), batch(0, 2)
    t.add([b0, b1, b2])
    t.ready(0.0, leader0, always)
    t.on_success(b0, 0, -1)
    plan, unknown, _ = t.ready(0.0, leader0, always)
    assert plan == {0: [b1]} and not unknown  # one batch per partition per request
    plan, _, _ = t.ready(0.0, leader0, always)
    assert plan == {0: [b2]}
    assert (b1.producer_id, b1.producer_epoch, b1.base_sequence) == (7, 0, 1)
    assert b2.base_sequence == 4
    out = t.on_error(b1, NotLeaderOrFollowerError(), 0.0)
    assert out.retried == [b1] and out.refresh_metadata
    # b2 was refused because of the gap: retriable, and put back after b1.
    out = t.on_error(b2, OutOfOrderSequenceError(), 0.0)
    assert out.retried == [b2]
    plan, _, wake = t.ready(0.0, leader0, always)
    assert plan == {} and wake > 0.0  # backoff
    plan, _, _ = t.ready(5.0, leader0, always)
    assert plan == {0: [b1]} and b1.base_sequence == 1 and b1.attempts == 2
    plan, _, _ = t.ready(5.0, leader0, always)
    assert plan == {}  # recovering: one in flight at a time
    t.on_success(b1, 100, -1)
    plan, _, _ = t.ready(5.0, leader0, always)
    assert plan == {0: [b2]} and b2.base_sequence == 4
    t.on_success(b2, 103, -1)
    assert b1.done and b2.done and t.pending == 0


def test_unknown_leader_and_busy_node_hold_batches() -> None:
    t = tracker()
    b = batch(1, 1)
    t.add([b])
    plan, unknown, _ = t.ready(0.0, lambda tp: None, always)
    assert plan == {} and unknown == {TopicPartition("t", 1)}
    plan, _, _ = t.ready(0.0, leader0, lambda n: False)
    assert plan == {}
    plan, _, _ = t.ready(0.0, leader0, always)
    assert plan == {0: [b]}


def test_request_byte_budget_splits_batches_across_requests() -> None:
    t = tracker()
    bs = [batch(p, 10) for p in range(3)]  # 100 bytes each
    t.add(bs)
    plan, _, _ = t.ready(0.0, leader0, always, max_request_bytes=250)
    assert plan == {0: bs[:2]}
    plan, _, _ = t.ready(0.0, leader0, always, max_request_bytes=250)
    assert plan == {0: bs[2:]}


def test_fatal_error_fails_the_batch_and_forces_an_epoch_bump() -> None:
    t = tracker()
    b1, b2 = batch(0, 1), batch(0, 1)
    t.add([b1, b2])
    t.ready(0.0, leader0, always)
    out = t.on_error(b1, MessageTooLargeError(), 0.0)
    assert out.completed == [b1] and isinstance(b1.error, MessageTooLargeError)
    assert t.bump_required
    plan, _, _ = t.ready(0.0, leader0, always)
    assert plan == {}  # nothing goes out until the new epoch
    t.set_producer_id(7, 1)
    plan, _, _ = t.ready(0.0, leader0, always)
    assert plan == {0: [b2]} and (b2.producer_epoch, b2.base_sequence) == (1, 0)


def test_retries_and_delivery_timeout_bound_a_batch() -> None:
    t = tracker(retries=1)
    b = batch(0, 1)
    b.deadline = 100.0
    t.add([b])
    t.ready(0.0, leader0, always)
    t.on_error(b, ConnectionLostError("x"), 0.0)
    t.ready(10.0, leader0, always)
    out = t.on_error(b, ConnectionLostError("y"), 10.0)
    assert out.completed == [b] and isinstance(b.error, ConnectionLostError)

    t2 = tracker()
    c = batch(0, 1)
    c.deadline = 1.0
    t2.add([c])
    t2.ready(0.0, leader0, always)
    out = t2.on_error(c, ConnectionLostError("z"), 2.0)
    assert isinstance(c.error, DeliveryTimeoutError)
    d = batch(1, 1)
    d.deadline = 3.0
    t2.add([d])
    assert t2.expire(3.0) == [d] and isinstance(d.error, DeliveryTimeoutError)


def test_non_idempotent_retry_keeps_creation_order() -> None:
    t = tracker(idempotent=False)
    b1, b2, b3 = batch(0, 1, created=1.0), batch(0, 1, created=2.0), batch(0, 1, created=3.0)
    t.add([b1, b2, b3])
    t.ready(0.0, leader0, always)
    t.ready(0.0, leader0, always)
    t.on_error(b2, ConnectionLostError("x"), 0.0)
    t.on_error(b1, ConnectionLostError("x"), 0.0)
    assert list(t.partitions[TopicPartition("t", 0)].queue) == [b1, b2, b3]
    assert b1.base_sequence == -1


@dataclass
class BrokerPartition:
    log: list[bytes] = field(default_factory=list)
    recent: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=5))
    epoch: int = -1


class SimulatedBroker:
    """The broker's idempotence rules (as broker/log/producer_state does them)."""

    def __init__(self) -> None:
        self.partitions: dict[int, BrokerPartition] = {}

    def append(self, b: ProducerBatch) -> int | type[Exception]:
        p = self.partitions.setdefault(b.partition, BrokerPartition())
        first = b.base_sequence
        last = increment_sequence(first, b.record_count - 1)
        if b.producer_epoch > p.epoch:
            if first != 0 and p.epoch >= 0:
                return OutOfOrderSequenceError
            p.epoch, p.recent = b.producer_epoch, deque(maxlen=5)
        for f, la, base in p.recent:
            if f == first and la == last:
                return base  # a retried duplicate: the original offset
        if p.recent and first != increment_sequence(p.recent[-1][1], 1):
            return OutOfOrderSequenceError
        base = len(p.log)
        p.log.extend(r[2] for r in b.records if isinstance(r[2], bytes))
        p.recent.append((first, last, base))
        return base


class IdempotentDeliveryMachine(RuleBasedStateMachine):
    """Random losses, rejections and reorderings never duplicate or reorder a
    partition's records, and every batch succeeds once the network heals."""

    def __init__(self) -> None:
        super().__init__()
        self.t = tracker(rng=random.Random(5))
        self.broker = SimulatedBroker()
        self.now = 0.0
        self.requests: deque[list[ProducerBatch]] = deque()  # FIFO on one connection
        self.sent_values: dict[int, list[bytes]] = {0: [], 1: []}
        self.batches: list[ProducerBatch] = []
        self.counter = 0

    @rule(partition=st.integers(0, 1), n=st.integers(1, 4))
    def new_batch(self, partition: int, n: int) -> None:
        b = batch(partition, n, tag=f"b{self.counter}-", created=self.now)
        self.counter += 1
        self.sent_values[partition].extend(r[2] for r in b.records if isinstance(r[2], bytes))
        self.batches.append(b)
        self.t.add([b])

    @rule()
    def send(self) -> None:
        plan, _, _ = self.t.ready(self.now, leader0, lambda n: len(self.requests) < 5)
        for batches in plan.values():
            self.requests.append(list(batches))

    @rule(dt=st.sampled_from([0.0, 0.05, 0.5, 2.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    def _apply(self, request: list[ProducerBatch]) -> None:
        for b in request:
            result = self.broker.append(b)
            if isinstance(result, int):
                self.t.on_success(b, result, -1)
            else:
                self.t.on_error(b, result(), self.now)

    def _lose(self, request: list[ProducerBatch]) -> None:
        for b in request:
            self.t.on_error(b, ConnectionLostError("lost"), self.now)

    @precondition(lambda self: self.requests)
    @rule()
    def deliver(self) -> None:
        self._apply(self.requests.popleft())

    @precondition(lambda self: self.requests)
    @rule()
    def deliver_but_lose_the_answer(self) -> None:
        request = self.requests.popleft()
        for b in request:
            self.broker.append(b)
        # The connection died: this answer and every later request are lost.
        self._lose(request)
        while self.requests:
            self._lose(self.requests.popleft())

    @precondition(lambda self: self.requests)
    @rule()
    def reject_not_leader(self) -> None:
        for b in self.requests.popleft():
            self.t.on_error(b, NotLeaderOrFollowerError(), self.now)

    @precondition(lambda self: self.requests)
    @rule()
    def connection_dies(self) -> None:
        while self.requests:
            self._lose(self.requests.popleft())

    def teardown(self) -> None:
        for _ in range(1000):
            if self.t.pending == 0 and not self.requests:
                break
            self.now += 5.0
            self.send()
            while self.requests:
                self._apply(self.requests.popleft())
        assert self.t.pending == 0
        for b in self.batches:
            assert b.done and b.error is None, b
        for p in (0, 1):
            log = self.broker.partitions.get(p, BrokerPartition()).log
            assert log == self.sent_values[p]


TestIdempotentDelivery = IdempotentDeliveryMachine.TestCase
TestIdempotentDelivery.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)


@pytest.mark.parametrize("seed", range(3))
def test_fail_all_completes_everything(seed: int) -> None:
    t = tracker(rng=random.Random(seed))
    bs = [batch(p % 2, 1) for p in range(6)]
    t.add(bs)
    t.ready(0.0, leader0, always)
    failed = t.fail_all(RuntimeError("closing"))
    assert sorted(map(id, failed)) == sorted(map(id, bs))
    assert t.pending == 0 and all(isinstance(b.error, RuntimeError) for b in bs)
