"""Record serde, the group -> partition hash, timers, and reading an offsets log."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.groups.coordinator import encode_records, read_records
from broker.groups.partitioning import group_partition, java_string_hash
from broker.groups.records import (
    CurrentAssignmentKey,
    CurrentAssignmentValue,
    GroupMetadataKey,
    GroupMetadataValue,
    GroupRecord,
    MemberMetadataKey,
    MemberMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    RecordFormatError,
    TargetAssignmentMemberKey,
    TargetAssignmentMemberValue,
    TargetAssignmentMetadataKey,
    TargetAssignmentMetadataValue,
    decode,
    encode,
)
from broker.groups.timers import Timers
from broker.log import Log, LogConfig

texts = st.text(max_size=12)
ints = st.integers(-(2**31), 2**31 - 1)
assignments = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.frozensets(st.integers(0, 1000), min_size=1, max_size=5),
    max_size=3,
)

records = st.one_of(
    st.builds(
        GroupRecord,
        st.builds(OffsetCommitKey, texts, texts, st.integers(0, 2**31 - 1)),
        st.none() | st.builds(OffsetCommitValue, st.integers(0, 2**62), ints, texts, ints),
    ),
    st.builds(
        GroupRecord,
        st.builds(GroupMetadataKey, texts),
        st.none() | st.builds(GroupMetadataValue, ints, st.dictionaries(texts, st.integers(0, 99))),
    ),
    st.builds(
        GroupRecord,
        st.builds(MemberMetadataKey, texts, texts),
        st.none()
        | st.builds(
            MemberMetadataValue,
            st.none() | texts,
            st.none() | texts,
            texts,
            texts,
            st.lists(texts, max_size=3).map(tuple),
            st.none() | texts,
            st.none() | st.sampled_from(["uniform", "range"]),
            st.integers(1, 2**31 - 1),
        ),
    ),
    st.builds(
        GroupRecord,
        st.builds(TargetAssignmentMetadataKey, texts),
        st.none() | st.builds(TargetAssignmentMetadataValue, ints),
    ),
    st.builds(
        GroupRecord,
        st.builds(TargetAssignmentMemberKey, texts, texts),
        st.none() | st.builds(TargetAssignmentMemberValue, assignments),
    ),
    st.builds(
        GroupRecord,
        st.builds(CurrentAssignmentKey, texts, texts),
        st.none()
        | st.builds(
            CurrentAssignmentValue,
            ints,
            ints,
            st.sampled_from(["stable", "unrevoked_partitions", "unreleased_partitions"]),
            assignments,
            assignments,
        ),
    ),
)


@given(records)
def test_records_round_trip(record: GroupRecord) -> None:
    key, value = encode(record)
    assert decode(key, value) == record
    # Keys are deterministic bytes: compaction matches them.
    assert encode(record)[0] == key


def test_bad_records_are_rejected() -> None:
    good_key, good_value = encode(
        GroupRecord(OffsetCommitKey("g", "t", 0), OffsetCommitValue(1, -1, "", 0))
    )
    assert good_value is not None
    for key in (b"\xc1", b"\x90", b"\x92\x63\xa1g", b"\x93\x01\xa1g\xa1t"):
        with pytest.raises(RecordFormatError):
            decode(key, good_value)
    with pytest.raises(RecordFormatError):
        decode(good_key, b"\x80")
    with pytest.raises(RecordFormatError):
        decode(None, good_value)
    with pytest.raises(TypeError):
        encode(GroupRecord(GroupMetadataKey("g"), TargetAssignmentMetadataValue(1)))


def test_java_hash_matches_java() -> None:
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("abc") == 96354
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00  # UTF-16 code units
    assert group_partition("polygenelubricants", 50) == 0
    assert group_partition("hello", 50) == 99162322 % 50
    assert all(0 <= group_partition(f"g{i}", 16) < 16 for i in range(100))
    with pytest.raises(ValueError):
        group_partition("g", 0)


def test_timers() -> None:
    timers: Timers[str] = Timers()
    timers.set("a", 10)
    timers.set("b", 5)
    timers.set("a", 20)  # replaces
    assert timers.next_deadline() == 5
    assert timers.pop_due(9) == ["b"]
    assert timers.next_deadline() == 20
    timers.cancel("a")
    assert timers.next_deadline() is None
    assert timers.pop_due(100) == []
    for i in range(500):
        timers.set("k", i)  # compaction of stale heap entries keeps it small
    assert len(timers) == 1 and timers.get("k") == 499


def test_encode_records_splits_large_decisions() -> None:
    big = [
        GroupRecord(
            TargetAssignmentMemberKey("g", f"member-{i}"),
            TargetAssignmentMemberValue({f"topic-{i}": frozenset(range(2000))}),
        )
        for i in range(100)
    ]
    batches = encode_records(big, 1)
    assert len(batches) > 1
    assert all(len(b) < 1024 * 1024 for b in batches)


def test_read_records_after_compaction(tmp_path: Path) -> None:
    """Replay reads every surviving record of a compacted, multi-segment offsets log."""
    config = LogConfig(segment_bytes=1024, cleanup_policy="compact", delete_retention_ms=0)
    log = Log.open(str(tmp_path), "__consumer_offsets", 0, config)
    expected: dict[tuple[str, int], int] = {}
    for i in range(300):
        key = ("t", i % 7)
        record = GroupRecord(OffsetCommitKey("g", *key), OffsetCommitValue(i, -1, "", 0))
        for batch in encode_records([record], 1):
            log.append(batch, 0, 1)
        expected[key] = i
    dropped = GroupRecord(OffsetCommitKey("g", "gone", 0), None)
    for batch in encode_records([dropped], 1):
        log.append(batch, 0, 1)
    log.high_watermark = log.log_end_offset
    assert len(log.segments) > 2
    assert log.compact(10**12) > 0
    got: dict[tuple[str, int], int] = {}
    n = 0
    for rec in read_records(log):
        n += 1
        if isinstance(rec.key, OffsetCommitKey) and isinstance(rec.value, OffsetCommitValue):
            got[(rec.key.topic, rec.key.partition)] = rec.value.offset
    assert got == expected
    assert n < 300
    log.close()
