from __future__ import annotations

import contextlib
import importlib.util
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import records as R

keys = st.none() | st.binary(max_size=20)
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=3)
record = st.builds(
    R.Record,
    timestamp=st.integers(0, 2**40),
    key=keys,
    value=keys,
    headers=headers,
)
records = st.lists(record, min_size=1, max_size=8)


@given(
    records,
    st.sampled_from([R.COMPRESSION_NONE, R.COMPRESSION_ZLIB]),
    st.integers(-1, 2**40),
    st.integers(-1, 2**15 - 1),
    st.integers(-1, 2**30),
)
def test_round_trip(recs: list[R.Record], codec: int, pid: int, pepoch: int, seq: int) -> None:
    b = R.encode_batch(
        recs, compression=codec, producer_id=pid, producer_epoch=pepoch, base_sequence=seq
    )
    h, out = R.decode_batch(b)
    assert h.record_count == len(recs) == len(out)
    assert h.last_offset_delta == len(recs) - 1
    assert h.max_timestamp == max(r.timestamp for r in recs)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (pid, pepoch, seq)
    assert h.compression == codec
    for i, (r, d) in enumerate(zip(recs, out, strict=True)):
        assert d.offset == i
        assert (d.timestamp, d.key, d.value) == (r.timestamp, r.key, r.value)
        assert d.headers == [tuple(x) for x in r.headers]


@given(records, st.integers(0, 2**62), st.integers(-1, 2**31 - 1))
def test_stamping_keeps_crc_valid(recs: list[R.Record], base: int, epoch: int) -> None:
    b = R.stamp_batch(R.encode_batch(recs), base, epoch)
    h, out = R.decode_batch(b)
    assert (h.base_offset, h.partition_leader_epoch) == (base, epoch)
    assert [d.offset for d in out] == list(range(base, base + len(recs)))
    assert R.stamped_prefix(R.encode_batch(recs), base, epoch) == b[:16]


STAMPED = set(range(0, 8)) | set(range(12, 16))


@settings(max_examples=30)
@given(records, st.sampled_from([R.COMPRESSION_NONE, R.COMPRESSION_ZLIB]), st.data())
def test_every_single_byte_corruption_is_detected(
    recs: list[R.Record], codec: int, data: st.DataObject
) -> None:
    """Any change to a byte outside the stamped fields (base_offset, leader epoch) fails
    validation; the stamped fields are rewritten by the broker and carry no check."""
    b = R.encode_batch(recs, compression=codec)
    for pos in range(len(b)):
        if pos in STAMPED:
            continue
        delta = data.draw(st.integers(1, 255), label=f"delta@{pos}")
        bad = bytearray(b)
        bad[pos] = (bad[pos] + delta) % 256
        with pytest.raises(R.CorruptRecordError):
            R.validate_batch(bytes(bad))
        with pytest.raises(R.CorruptRecordError):
            R.decode_batch(bytes(bad))


def test_stamped_fields_change_without_error() -> None:
    b = bytearray(R.encode_batch([R.Record(1, b"k", b"v")]))
    b[3] ^= 0xFF
    b[13] ^= 0xFF
    R.validate_batch(bytes(b))


def test_error_kinds() -> None:
    b = R.encode_batch([R.Record(1, b"k", b"v")])
    with pytest.raises(R.InvalidBatchLength):
        R.validate_batch(b[:-1])
    with pytest.raises(R.InvalidBatchLength):
        R.validate_batch(b + b"x")
    with pytest.raises(R.InvalidBatchLength):
        R.parse_header(b[:60])
    bad = bytearray(b)
    bad[16] = 1
    with pytest.raises(R.UnsupportedMagic):
        R.validate_batch(bytes(bad))
    bad = bytearray(b)
    bad[-1] ^= 1
    with pytest.raises(R.CrcMismatch):
        R.validate_batch(bytes(bad))
    huge = bytearray(b)
    struct.pack_into(">i", huge, 8, 2**31 - 1)
    with pytest.raises(R.InvalidBatchLength):
        R.validate_batch(bytes(huge))
    struct.pack_into(">i", huge, 8, -5)
    with pytest.raises(R.InvalidBatchLength):
        R.validate_batch(bytes(huge))


def _reseal(b: bytearray) -> bytes:
    struct.pack_into(">I", b, R.CRC_POS, R.batch_crc(b[R.ATTRIBUTES_POS :]))
    return bytes(b)


def test_lying_record_count_with_valid_crc() -> None:
    b = bytearray(R.encode_batch([R.Record(1, b"k", b"v"), R.Record(2, b"k", b"v")]))
    struct.pack_into(">i", b, R.RECORD_COUNT_POS, 1)
    struct.pack_into(">i", b, R.LAST_OFFSET_DELTA_POS, 0)
    lying = _reseal(b)
    R.validate_batch(lying)
    with pytest.raises(R.InvalidRecords):
        R.decode_batch(lying)


def test_bad_body_with_valid_crc() -> None:
    body = b"\xdb\xff\xff\xff\xff"  # str32 claiming 4 GiB
    hdr = bytearray(R.encode_batch([R.Record(1, None, None)])[: R.HEADER_SIZE])
    struct.pack_into(">i", hdr, 8, R.HEADER_SIZE - 12 + len(body))
    bad = _reseal(hdr + body)
    with pytest.raises(R.InvalidRecords):
        R.decode_batch(bad)


def test_zlib_bomb_and_garbage() -> None:
    hdr = bytearray(R.encode_batch([R.Record(1, None, None)])[: R.HEADER_SIZE])
    struct.pack_into(">h", hdr, R.ATTRIBUTES_POS, R.COMPRESSION_ZLIB)
    body = b"not zlib"
    struct.pack_into(">i", hdr, 8, R.HEADER_SIZE - 12 + len(body))
    with pytest.raises(R.InvalidRecords):
        R.decode_batch(_reseal(hdr + body))


def test_unknown_and_missing_codecs() -> None:
    with pytest.raises(R.UnsupportedCompression):
        R.encode_batch([R.Record(1, b"k", b"v")], compression=6)
    for codec, mod in ((R.COMPRESSION_LZ4, "lz4"), (R.COMPRESSION_ZSTD, "zstandard")):
        if importlib.util.find_spec(mod) is None:
            with pytest.raises(R.UnsupportedCompression, match=mod):
                R.encode_batch([R.Record(1, b"k", b"v")], compression=codec)
        else:
            b = R.encode_batch([R.Record(1, b"k", b"v")], compression=codec)
            assert R.decode_batch(b)[1][0].value == b"v"


@given(st.lists(records, min_size=1, max_size=5))
def test_walk_batches(batches: list[list[R.Record]]) -> None:
    encoded = [R.encode_batch(b, base_offset=i * 100) for i, b in enumerate(batches)]
    buf = b"".join(encoded)
    walked = list(R.walk_batches(buf, check_crc=True))
    assert [h.base_offset for _, h in walked] == [i * 100 for i in range(len(batches))]
    pos = 0
    for (p, h), e in zip(walked, encoded, strict=True):
        assert p == pos and h.size == len(e)
        pos += len(e)
    assert len(R.decode_batches(buf)) == len(batches)
    with pytest.raises(R.InvalidBatchLength):
        list(R.walk_batches(buf[:-1]))


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_our_errors(data: bytes) -> None:
    for fn in (
        R.validate_batch,
        R.decode_batch,
        R.decode_batches,
        lambda d: list(R.walk_batches(d)),
    ):
        with contextlib.suppress(R.CorruptRecordError):
            fn(data)


@given(records, st.binary(min_size=1, max_size=200), st.integers(61, 400))
def test_random_body_with_valid_crc_only_raises_our_errors(
    recs: list[R.Record], body: bytes, _: int
) -> None:
    hdr = bytearray(R.encode_batch(recs)[: R.HEADER_SIZE])
    struct.pack_into(">i", hdr, 8, R.HEADER_SIZE - 12 + len(body))
    with contextlib.suppress(R.CorruptRecordError):
        R.decode_batch(_reseal(hdr + body))


def test_encode_raw_fast_path() -> None:
    b = R.encode_batch_raw(
        [[0, b"k", b"v", []], [5, None, b"w", []]], base_timestamp=10, max_timestamp=15
    )
    _, out = R.decode_batch(b)
    assert [(d.timestamp, d.key, d.value) for d in out] == [(10, b"k", b"v"), (15, None, b"w")]
    with pytest.raises(ValueError):
        R.encode_batch_raw([], base_timestamp=0, max_timestamp=0)


def test_sequence_wraps() -> None:
    assert R.increment_sequence(2**31 - 1, 1) == 0
    assert R.increment_sequence(2**31 - 2, 3) == 1
    assert R.increment_sequence(5, 3) == 8
