"""The consumer's fetch state (sans-IO) and batch decoding."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from client.errors import IllegalStateError, NoOffsetForPartitionError
from client.fetcher import FetchState, complete_batches, decode_records
from client.protocol import NotLeaderOrFollowerError, OffsetOutOfRangeError
from client.records import (
    COMPRESSION_ZLIB,
    HEADER_SIZE,
    CorruptRecordError,
    InvalidRecords,
    Record,
    encode_batch,
    encode_batch_raw,
    parse_header,
)
from client.serializers import deserialize_str
from client.types import ConsumerRecord, TopicPartition

TP = TopicPartition("t", 0)


def batch_at(base: int, values: list[bytes], ts: int = 1000, **kw: Any) -> bytes:
    return encode_batch(
        [Record(ts + i, b"k%d" % (base + i), v, [("h", b"1")]) for i, v in enumerate(values)],
        base_offset=base,
        **kw,
    )


def log_of(n: int, per_batch: int = 3) -> tuple[bytes, list[bytes]]:
    values = [b"v%d" % i for i in range(n)]
    data = b"".join(batch_at(i, values[i : i + per_batch]) for i in range(0, n, per_batch))
    return data, values


def answer(data: bytes, hw: int = 0, code: int = 0) -> dict[str, Any]:
    return {"error_code": code, "high_watermark": hw, "log_start_offset": 0, "records": data}


def test_decode_records_builds_consumer_records() -> None:
    raw = batch_at(10, [b"a", b"b", b"c"], compression=COMPRESSION_ZLIB)
    h = parse_header(raw)
    recs = decode_records("t", 3, h, memoryview(raw)[HEADER_SIZE:], 1, None, deserialize_str)
    assert recs == [
        ConsumerRecord("t", 3, 11, 1001, b"k11", "b", (("h", b"1"),)),
        ConsumerRecord("t", 3, 12, 1002, b"k12", "c", (("h", b"1"),)),
    ]
    assert recs[0].value == "b" and recs[0].offset == 11


def test_decode_records_rejects_malformed_bodies() -> None:
    good = batch_at(0, [b"a"])
    h = parse_header(good)
    for body in (msgpack.packb([[1, None, b"x"]]), msgpack.packb([1]), b"\xc1", msgpack.packb({})):
        with pytest.raises(InvalidRecords):
            decode_records("t", 0, h, body, 0, None, None)
    two = encode_batch_raw(
        [(0, None, b"x", []), ("ts", None, b"y", [])], base_timestamp=0, max_timestamp=0
    )
    with pytest.raises(InvalidRecords):
        decode_records("t", 0, parse_header(two), memoryview(two)[HEADER_SIZE:], 0, None, None)


def test_complete_batches_drops_a_partial_tail() -> None:
    data, _ = log_of(6)
    mv, end = complete_batches(data + data[:30])
    assert bytes(mv) == data and end == 6
    mv, end = complete_batches(data[:10])
    assert len(mv) == 0 and end is None


def take_all(fs: FetchState, n: int = 1000) -> list[ConsumerRecord]:
    return fs.take(n, True, None, None)


def test_positions_fetch_offsets_and_prefetch() -> None:
    fs = FetchState(auto_offset_reset="earliest", max_buffered_fetches=2)
    fs.assign([TP])
    assert fs.needs_reset() == {TP: "earliest"}
    assert fs.fetchable(0.0) == []
    fs.apply_reset(TP, "earliest", 0)
    assert fs.fetchable(0.0) == [TP]
    data, values = log_of(9)
    offset, gen = fs.fetch_started(TP)
    assert offset == 0 and fs.fetchable(0.0) == []  # one fetch in flight per partition
    fs.on_response(TP, gen, answer(data[: len(data) * 2 // 3], hw=9), 0.0)
    st_ = fs.partitions[TP]
    assert st_.fetch_offset == 6 and st_.position == 0 and st_.high_watermark == 9
    assert fs.fetchable(0.0) == [TP]  # prefetch: the next fetch may go while 0..5 wait
    offset, gen = fs.fetch_started(TP)
    assert offset == 6
    fs.on_response(TP, gen, answer(log_of(9)[0]), 0.0)  # the broker re-sends from batch start
    got = fs.take(4, True, None, None)
    assert [r.value for r in got] == values[:4] and st_.position == 4
    got = take_all(fs)
    assert [r.value for r in got] == values[4:] and st_.position == 9


def test_seek_drops_buffered_data_and_ignores_stale_answers() -> None:
    fs = FetchState(auto_offset_reset="earliest")
    fs.assign([TP])
    fs.seek(TP, 0)
    data, _values = log_of(6)
    _, gen = fs.fetch_started(TP)
    fs.seek(TP, 4)
    fs.on_response(TP, gen, answer(data), 0.0)  # answer to the pre-seek fetch: ignored
    assert take_all(fs) == []
    _, gen = fs.fetch_started(TP)
    fs.on_response(TP, gen, answer(data), 0.0)
    assert [r.offset for r in take_all(fs)] == [4, 5]
    with pytest.raises(IllegalStateError):
        fs.seek(TopicPartition("other", 0), 1)


def test_errors_out_of_range_resets_or_raises() -> None:
    fs = FetchState(auto_offset_reset="latest")
    fs.assign([TP])
    fs.seek(TP, 50)
    _, gen = fs.fetch_started(TP)
    fs.on_response(TP, gen, answer(b"", code=OffsetOutOfRangeError.code), 0.0)
    assert fs.needs_reset() == {TP: "latest"}

    strict = FetchState(auto_offset_reset="none")
    strict.assign([TP])
    with pytest.raises(NoOffsetForPartitionError):
        strict.needs_reset()
    strict.seek(TP, 50)
    _, gen = strict.fetch_started(TP)
    strict.on_response(TP, gen, answer(b"", code=OffsetOutOfRangeError.code), 1.0)
    with pytest.raises(OffsetOutOfRangeError):
        take_all(strict)

    fs2 = FetchState(auto_offset_reset="earliest", retry_backoff=0.5)
    fs2.assign([TP])
    fs2.seek(TP, 0)
    _, gen = fs2.fetch_started(TP)
    assert fs2.on_response(TP, gen, answer(b"", code=NotLeaderOrFollowerError.code), 1.0)
    assert fs2.fetchable(1.2) == [] and fs2.fetchable(1.5) == [TP]
    assert fs2.next_retry(1.2) == 1.5


def test_corrupt_batch_raises_until_sought_past() -> None:
    fs = FetchState(auto_offset_reset="earliest")
    fs.assign([TP])
    fs.seek(TP, 0)
    good = batch_at(0, [b"a"])
    bad = bytearray(batch_at(1, [b"b"]))
    bad[-1] ^= 0xFF
    _, gen = fs.fetch_started(TP)
    fs.on_response(TP, gen, answer(good + bytes(bad)), 0.0)
    assert [r.value for r in take_all(fs)] == [b"a"]
    for _ in range(2):
        with pytest.raises(CorruptRecordError):
            take_all(fs)
    fs.seek(TP, 2)
    assert take_all(fs) == []
    # With CRC checks off the body still decodes (the flip hit the value bytes).
    fs.seek(TP, 0)
    _, gen = fs.fetch_started(TP)
    fs.on_response(TP, gen, answer(good + bytes(bad)), 0.0)
    assert len(fs.take(10, False, None, None)) == 2


def test_pause_holds_records_and_assign_keeps_positions() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    fs = FetchState(auto_offset_reset="earliest")
    fs.assign([a, b])
    fs.seek(a, 0)
    fs.seek(b, 0)
    for tp in (a, b):
        _, gen = fs.fetch_started(tp)
        fs.on_response(tp, gen, answer(log_of(3)[0]), 0.0)
    fs.partitions[a].paused = True
    assert {r.partition for r in take_all(fs)} == {1}
    assert not fs.has_records()
    fs.partitions[a].paused = False
    assert fs.has_records()
    fs.assign([a, TopicPartition("t", 2)])
    assert fs.partitions[a].position == 0 and TopicPartition("t", 2) in fs.needs_reset()
    assert [r.offset for r in take_all(fs)] == [0, 1, 2]


class FetchMachine(RuleBasedStateMachine):
    """Fetches of random sizes, answered in random order, with seeks in between:
    ``take`` always returns the log's records from the position on, in order,
    without gaps or repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.fs = FetchState(auto_offset_reset="earliest", max_buffered_fetches=2)
        self.fs.assign([TP])
        self.data, self.values = log_of(40, per_batch=4)
        self.offsets: list[int] = []
        pos = 0
        while pos < len(self.data):
            h = parse_header(self.data, pos)
            self.offsets.append(pos)
            pos += h.size
        self.fs.apply_reset(TP, "earliest", 0)
        self.expected = 0
        self.in_flight: list[tuple[int, int]] = []

    def _slice_from(self, offset: int, nbatches: int) -> bytes:
        start = offset // 4
        first = self.offsets[start] if start < len(self.offsets) else len(self.data)
        stop = start + nbatches
        last = self.offsets[stop] if stop < len(self.offsets) else len(self.data)
        return self.data[first:last]

    @precondition(lambda self: TP in self.fs.fetchable(0.0))
    @rule()
    def start_fetch(self) -> None:
        self.in_flight.append(self.fs.fetch_started(TP))

    @precondition(lambda self: self.in_flight)
    @rule(nbatches=st.integers(0, 4), partial=st.booleans())
    def answer(self, nbatches: int, partial: bool) -> None:
        offset, gen = self.in_flight.pop(0)
        data = self._slice_from(offset, nbatches)
        if partial and data:
            data = data + self._slice_from(offset + 4 * nbatches, 1)[:20]
        self.fs.on_response(TP, gen, answer(data, hw=40), 0.0)

    @precondition(lambda self: self.in_flight)
    @rule()
    def fail(self) -> None:
        _offset, gen = self.in_flight.pop(0)
        self.fs.fetch_failed(TP, gen, -1.0)

    @rule(n=st.integers(1, 7))
    def take(self, n: int) -> None:
        got = self.fs.take(n, True, None, None)
        assert [r.offset for r in got] == list(range(self.expected, self.expected + len(got)))
        assert [r.value for r in got] == self.values[self.expected : self.expected + len(got)]
        self.expected += len(got)

    @rule(offset=st.integers(0, 40))
    def seek(self, offset: int) -> None:
        self.fs.seek(TP, offset)
        self.expected = offset

    @invariant()
    def position_matches(self) -> None:
        st_ = self.fs.partitions[TP]
        assert st_.position == self.expected
        assert st_.fetch_offset is not None and st_.fetch_offset >= st_.position
        assert len(st_.buffered) <= 2


TestFetchMachine = FetchMachine.TestCase
TestFetchMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
