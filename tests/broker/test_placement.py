"""Replica placement: distinct replicas, balanced leaders, racks spread."""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import given

from broker.placement import assign_replicas, rack_alternated
from client.protocol import InvalidPartitionsError, InvalidReplicationFactorError


@given(
    brokers=st.integers(1, 8),
    partitions=st.integers(1, 40),
    data=st.data(),
)
def test_replicas_are_distinct_and_leaders_balanced(
    brokers: int, partitions: int, data: st.DataObject
) -> None:
    factor = data.draw(st.integers(1, brokers))
    start = data.draw(st.integers(0, 100))
    shift = data.draw(st.integers(0, 100))
    assignment = assign_replicas(partitions, factor, {b: "" for b in range(brokers)}, start, shift)
    assert sorted(assignment) == list(range(partitions))
    for replicas in assignment.values():
        assert len(replicas) == factor == len(set(replicas))
        assert set(replicas) <= set(range(brokers))
    leaders = Counter(replicas[0] for replicas in assignment.values())
    counts = [leaders.get(b, 0) for b in range(brokers)]
    assert max(counts) - min(counts) <= 1


@given(racks=st.integers(2, 4), per_rack=st.integers(1, 3), partitions=st.integers(1, 20))
def test_replicas_spread_over_racks(racks: int, per_rack: int, partitions: int) -> None:
    brokers = {r * 10 + i: f"rack{r}" for r in range(racks) for i in range(per_rack)}
    factor = min(racks, len(brokers))
    assignment = assign_replicas(partitions, factor, brokers, 3, 5)
    for replicas in assignment.values():
        assert len({brokers[b] for b in replicas}) == factor


def test_rack_alternated_interleaves() -> None:
    assert rack_alternated({0: "a", 1: "a", 2: "b", 3: "c"}) == [0, 2, 3, 1]


def test_bad_counts() -> None:
    with pytest.raises(InvalidPartitionsError):
        assign_replicas(0, 1, {0: ""}, 0, 0)
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas(1, 2, {0: ""}, 0, 0)
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas(1, 0, {0: ""}, 0, 0)
