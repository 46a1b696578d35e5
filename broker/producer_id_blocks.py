"""Producer-id allocation in blocks (sans-IO), as Kafka's ZooKeeper-era ProducerIdManager.

The coordinator node ``/producer_id_block`` holds the last block handed out,
``[start, end)``. A broker claims the next block with a compare-and-set on that
node's version, then hands out ids from it locally without further round trips;
ids are unique cluster-wide and never reused, even across restarts (a restart
abandons the rest of its block).
"""

from __future__ import annotations

from broker.znodes import ProducerIdBlockData

MAX_PRODUCER_ID = 2**63 - 1
MAX_PRODUCER_EPOCH = 32767


class ProducerIdsExhaustedError(RuntimeError):
    """Every producer id has been handed out."""


def next_block(
    current: ProducerIdBlockData | None, broker_id: int, size: int
) -> ProducerIdBlockData:
    """The block to claim after ``current`` (None: no block was ever handed out)."""
    if size < 1:
        raise ValueError(f"block size must be positive, got {size}")
    start = 0 if current is None else current.end
    if start < 0 or start > MAX_PRODUCER_ID - size:
        raise ProducerIdsExhaustedError(f"no producer ids left after {start}")
    return ProducerIdBlockData(broker_id, start, start + size)


class ProducerIdBlock:
    """The ids left in this broker's current block."""

    def __init__(self) -> None:
        self._next = 0
        self._end = 0

    @property
    def remaining(self) -> int:
        return self._end - self._next

    def install(self, block: ProducerIdBlockData) -> None:
        if block.end <= block.start:
            raise ValueError(f"empty producer id block {block}")
        self._next = block.start
        self._end = block.end

    def take(self) -> int | None:
        """The next id, or None when the block is used up."""
        if self._next >= self._end:
            return None
        pid = self._next
        self._next += 1
        return pid


def bumped_epoch(producer_epoch: int) -> int | None:
    """The next epoch for an existing producer id, or None when it must get a new id."""
    nxt = producer_epoch + 1
    return nxt if 0 <= nxt < MAX_PRODUCER_EPOCH else None
