"""Kafka-compatible key hashing and the sticky partitioner."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.partitioner import (
    KeyHashCache,
    StickyPartitioner,
    murmur2,
    partition_for_key,
    to_positive,
)

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (Apache Kafka's own vectors).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), sorted(KAFKA_MURMUR2.items()))
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_to_positive_murmur2_mod_n() -> None:
    # Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions, Kafka's formula.
    for key, h in KAFKA_MURMUR2.items():
        for n in (1, 2, 3, 7, 12, 100):
            assert partition_for_key(key, n) == (h & 0x7FFFFFFF) % n
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0


def _reference_murmur2(data: bytes) -> int:
    """A literal transcription of Kafka's Java code, for the property test."""

    def i32(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x & 0x80000000 else x

    def ushr(x: int, n: int) -> int:
        return (x & 0xFFFFFFFF) >> n

    length = len(data)
    m = 0x5BD1E995
    h = i32(0x9747B28C ^ length)
    for i in range(length // 4):
        i4 = i * 4
        k = i32(data[i4] + (data[i4 + 1] << 8) + (data[i4 + 2] << 16) + (data[i4 + 3] << 24))
        k = i32(k * m)
        k = i32(k ^ ushr(k, 24))
        k = i32(k * m)
        h = i32(h * m)
        h = i32(h ^ k)
    rem = length % 4
    base = length & ~3
    if rem == 3:
        h = i32(h ^ (data[base + 2] << 16))
    if rem >= 2:
        h = i32(h ^ (data[base + 1] << 8))
    if rem >= 1:
        h = i32(h ^ data[base])
        h = i32(h * m)
    h = i32(h ^ ushr(h, 13))
    h = i32(h * m)
    h = i32(h ^ ushr(h, 15))
    return h


@given(st.binary(max_size=64))
def test_murmur2_matches_reference_transcription(data: bytes) -> None:
    assert murmur2(data) == _reference_murmur2(data)


@given(st.lists(st.binary(max_size=16), max_size=50), st.integers(1, 64))
def test_key_hash_cache_agrees_with_murmur2(keys: list[bytes], n: int) -> None:
    cache = KeyHashCache(capacity=8)
    for key in keys + keys:
        assert cache.partition(key, n) == partition_for_key(key, n)
    assert len(cache) <= 8


def test_sticky_partition_holds_until_its_batch_closes() -> None:
    sticky = StickyPartitioner(random.Random(7))
    first = sticky.partition("t", 5)
    assert all(sticky.partition("t", 5) == first for _ in range(100))
    sticky.on_batch_closed("t", (first + 1) % 5, 5)  # another partition's batch: no change
    assert sticky.partition("t", 5) == first
    sticky.on_batch_closed("t", first, 5)
    second = sticky.partition("t", 5)
    assert second != first and 0 <= second < 5


def test_sticky_partition_with_one_partition_and_shrunk_topic() -> None:
    sticky = StickyPartitioner(random.Random(1))
    assert sticky.partition("t", 1) == 0
    sticky.on_batch_closed("t", 0, 1)
    assert sticky.partition("t", 1) == 0
    sticky.current["u"] = 9
    assert 0 <= sticky.partition("u", 3) < 3


def test_sticky_partition_spreads_over_batches() -> None:
    sticky = StickyPartitioner(random.Random(3))
    seen = set()
    for _ in range(200):
        p = sticky.partition("t", 4)
        seen.add(p)
        sticky.on_batch_closed("t", p, 4)
    assert seen == {0, 1, 2, 3}
