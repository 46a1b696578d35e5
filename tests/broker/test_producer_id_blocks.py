"""Producer-id blocks: ids unique across brokers and restarts, epochs bump then roll over."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from broker.producer_id_blocks import (
    MAX_PRODUCER_EPOCH,
    MAX_PRODUCER_ID,
    ProducerIdBlock,
    ProducerIdsExhaustedError,
    bumped_epoch,
    next_block,
)
from broker.znodes import ProducerIdBlockData


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 50)), min_size=1, max_size=30))
def test_ids_never_repeat(claims: list[tuple[int, int]]) -> None:
    current: ProducerIdBlockData | None = None
    seen: set[int] = set()
    for broker, size in claims:
        current = next_block(current, broker, size)
        block = ProducerIdBlock()
        block.install(current)
        while (pid := block.take()) is not None:
            assert pid not in seen
            seen.add(pid)
        assert block.remaining == 0
    assert len(seen) == sum(size for _, size in claims)


def test_exhaustion_and_bad_sizes() -> None:
    last = ProducerIdBlockData(0, MAX_PRODUCER_ID - 5, MAX_PRODUCER_ID - 1)
    with pytest.raises(ProducerIdsExhaustedError):
        next_block(last, 0, 10)
    with pytest.raises(ValueError):
        next_block(None, 0, 0)
    with pytest.raises(ValueError):
        ProducerIdBlock().install(ProducerIdBlockData(0, 5, 5))


def test_epoch_bumps_until_it_would_overflow() -> None:
    assert bumped_epoch(0) == 1
    assert bumped_epoch(MAX_PRODUCER_EPOCH - 2) == MAX_PRODUCER_EPOCH - 1
    assert bumped_epoch(MAX_PRODUCER_EPOCH - 1) is None
