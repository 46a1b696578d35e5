"""Small sans-IO cores of replication: the acks purgatory, the lease, follower state, codecs."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from broker.replication.ack_purgatory import AckPurgatory
from broker.replication.admin_znodes import (
    decode_election,
    decode_reassignment,
    encode_election,
    encode_reassignment,
    parse_reassignment_name,
)
from broker.replication.follower_state import FollowerState, Next, Phase
from broker.replication.lease import LEASE_FRACTION, SessionLease
from broker.replication.produce_acks import ProduceAcks
from broker.znodes import ZnodeDataError
from client.protocol import NotLeaderOrFollowerError, OffsetOutOfRangeError

TPS = [("a", 0), ("a", 1), ("b", 0)]


@settings(max_examples=200, deadline=None)
@given(
    waiters=st.lists(
        st.dictionaries(st.sampled_from(TPS), st.integers(1, 20), min_size=1),
        min_size=1,
        max_size=8,
    ),
    events=st.lists(
        st.one_of(
            st.tuples(st.just("hw"), st.sampled_from(TPS), st.integers(0, 25)),
            st.tuples(st.just("settle"), st.sampled_from(TPS), st.just(0)),
            st.tuples(st.just("expire"), st.just(("", 0)), st.integers(0, 10)),
        ),
        max_size=30,
    ),
)
def test_every_waiter_completes_once_and_only_when_satisfied(
    waiters: list[dict[tuple[str, int], int]],
    events: list[tuple[str, tuple[str, int], int]],
) -> None:
    purgatory: AckPurgatory[int] = AckPurgatory()
    for i, required in enumerate(waiters):
        purgatory.park(i, required, deadline=float(i + 1))
    hw = dict.fromkeys(TPS, 0)
    settled: dict[int, set[tuple[str, int]]] = {i: set() for i in range(len(waiters))}
    done: dict[int, str] = {}

    def finish(waiter: int, how: str) -> None:
        assert waiter not in done, "completed twice"
        done[waiter] = how

    for kind, tp, value in events:
        if kind == "hw":
            hw[tp] = max(hw[tp], value)
            for w in purgatory.high_watermark(tp, hw[tp]):
                finish(w, "hw")
        elif kind == "settle":
            touched, finished = purgatory.settle_partition(tp)
            for w in touched:
                settled[w].add(tp)
            for w in finished:
                finish(w, "settle")
        else:
            for w, late in purgatory.expire(float(value)):
                assert late <= set(waiters[w]) and late, "expired with nothing pending"
                finish(w, "expire")
    for w, how in done.items():
        if how in ("hw", "settle"):
            for tp, offset in waiters[w].items():
                assert tp in settled[w] or hw[tp] >= offset, (w, tp)
    for w in range(len(waiters)):
        if w not in done:
            assert w in purgatory
            unsatisfied = {
                tp for tp, off in waiters[w].items() if hw[tp] < off and tp not in settled[w]
            }
            assert unsatisfied == purgatory.pending(w)
    assert len(purgatory.drain()) == len(waiters) - len(done)
    assert purgatory.next_deadline() is None


def test_lease_needs_an_answer_to_a_request_sent_after_a_suspension() -> None:
    lease = SessionLease(2.0)
    assert not lease.valid(0.0)
    lease.renewed(10.0)
    assert lease.valid(10.0 + 2.0 * LEASE_FRACTION - 0.01)
    assert not lease.valid(10.0 + 2.0 * LEASE_FRACTION)
    lease.suspend(11.0)
    assert not lease.valid(11.0)
    lease.renewed(10.5)  # sent before the connection dropped: proves nothing
    assert not lease.valid(11.1)
    lease.renewed(11.2)
    assert lease.valid(11.3)
    lease.set_timeout(4.0)
    lease.renewed(20.0)
    assert lease.valid(20.0 + 4.0 * LEASE_FRACTION - 0.01)
    assert lease.valid_until < math.inf


def test_admin_znode_codecs() -> None:
    assert decode_election(encode_election(None)) is None
    assert decode_election(encode_election([("t-1", 3)])) == [("t-1", 3)]
    assert decode_reassignment(encode_reassignment([2, 0])) == [2, 0]
    assert parse_reassignment_name("my-topic-12") == ("my-topic", 12)
    assert parse_reassignment_name("nope") is None
    with pytest.raises(ZnodeDataError):
        decode_reassignment(b'{"replicas": []}')
    with pytest.raises(ZnodeDataError):
        decode_election(b'{"partitions": [["t"]]}')


def test_follower_state_transitions() -> None:
    state = FollowerState(leader=1, leader_epoch=4, generation=7)
    assert state.phase is Phase.TRUNCATING and state.ready(0.0)
    state.truncated(complete=False)
    assert state.phase is Phase.TRUNCATING
    state.truncated(complete=True)
    assert state.phase is Phase.FETCHING
    assert state.fetch_failed(NotLeaderOrFollowerError.code, 10.0, 0.5) is Next.RETRY_LATER
    assert not state.ready(10.4) and state.ready(10.5)
    assert state.fetch_failed(OffsetOutOfRangeError.code, 11.0, 0.5) is Next.FIND_LOG_START
    assert state.log_start_found(100, 40, 11.0, 0.5), "behind the leader's log start"
    assert not state.log_start_found(10, 40, 11.0, 0.5), "ahead: diverged"
    assert state.phase is Phase.TRUNCATING
    state.truncated(complete=True)
    state.append_rejected()
    assert state.phase is Phase.TRUNCATING


class _FakePartition:
    def __init__(self, name: str, hw: int, end: int) -> None:
        self.key = (name, 0)
        self.high_watermark = hw
        self.log_end_offset = end


def test_when_committed_waits_for_every_partition_or_a_leadership_change() -> None:
    acks = ProduceAcks(lambda: True)
    released: list[str] = []
    a, b = _FakePartition("a", 5, 9), _FakePartition("b", 3, 3)
    assert not acks.when_committed([b], lambda: released.append("never"))  # type: ignore[list-item]
    assert acks.when_committed([a, b], lambda: released.append("ab"))  # type: ignore[list-item]
    a.high_watermark = 8
    acks.high_watermark_moved(a)  # type: ignore[arg-type]
    assert released == []
    a.high_watermark = 9
    acks.high_watermark_moved(a)  # type: ignore[arg-type]
    assert released == ["ab"]
    c = _FakePartition("c", 0, 4)
    assert acks.when_committed([c], lambda: released.append("c"))  # type: ignore[list-item]
    acks.leadership_changed(c.key)
    assert released == ["ab", "c"]
