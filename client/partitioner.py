"""Choosing a partition: Kafka's murmur2 key hash and the sticky partitioner.

A record with a key goes to ``toPositive(murmur2(key)) % num_partitions``, the
formula of Kafka's default partitioner, so a key lands on the same partition
number here as with a Java, librdkafka (``murmur2_random``) or franz-go producer.
A record without a key goes to the topic's *sticky* partition, which changes
when that partition's batch is closed (Kafka's KIP-480/794 idea: fill whole
batches instead of spraying tiny ones over every partition).
"""

from __future__ import annotations

import random
import struct

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF

_word_structs: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit int (as Java computes it)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    nwords = length >> 2
    if nwords:
        unpack = _word_structs.get(nwords)
        if unpack is None:
            unpack = _word_structs[nwords] = struct.Struct(f"<{nwords}I")
        for k in unpack.unpack_from(data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


class KeyHashCache:
    """Memoises ``murmur2(key) & 0x7fffffff`` for hot keys (a dict lookup instead
    of a pure-Python hash). Bounded: cleared when it reaches ``capacity``."""

    __slots__ = ("capacity", "hashes")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.hashes: dict[bytes, int] = {}

    def partition(self, key: bytes, num_partitions: int) -> int:
        """The partition of ``key`` among ``num_partitions`` (Kafka's formula), memoised."""
        h = self.hashes.get(key)
        if h is None:
            if len(self.hashes) >= self.capacity:
                self.hashes.clear()
            h = self.hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h % num_partitions

    def __len__(self) -> int:
        return len(self.hashes)


class StickyPartitioner:
    """The sticky partition of each topic for records without a key.

    ``current`` maps a topic to its sticky partition; ``on_batch_closed`` drops the
    entry when the sticky partition's batch closes, and the next keyless record
    picks a new partition at random (different from the last when possible).
    """

    __slots__ = ("_random", "current")

    def __init__(self, rng: random.Random | None = None) -> None:
        self.current: dict[str, int] = {}
        self._random = rng or random.Random()

    def partition(self, topic: str, num_partitions: int) -> int:
        """The topic's sticky partition, choosing one if it has none."""
        p = self.current.get(topic)
        if p is None or p >= num_partitions:
            p = self._random.randrange(num_partitions)
            self.current[topic] = p
        return p

    def on_batch_closed(self, topic: str, partition: int, num_partitions: int) -> None:
        """A batch of ``topic``/``partition`` closed: move on if it was the sticky one."""
        if self.current.get(topic) != partition:
            return
        if num_partitions <= 1:
            return
        p = self._random.randrange(num_partitions - 1)
        self.current[topic] = p + 1 if p >= partition else p
