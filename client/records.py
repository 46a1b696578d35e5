"""Record batch format: encode, decode and validate.

A batch is a 61-byte big-endian header modelled on Kafka's v2 record batch,
followed by a body: a msgpack array of records ``[timestamp_delta, key, value,
headers]``, optionally compressed. The CRC covers everything from
``attributes`` to the end of the batch, so the broker can stamp
``base_offset`` and ``partition_leader_epoch`` without recomputing it. The
CRC is CRC-32C (Castagnoli), as in Kafka's v2 batches: hardware-accelerated by
the ``crc32c`` package, about ten times faster than ``zlib.crc32`` on 64 KiB.

Validation (``validate_batch`` / ``walk_batches``) checks lengths, magic and
CRC without decoding records; ``decode_batch`` additionally decodes the body and
checks it against the header. Every failure raises a ``CorruptRecordError``
subclass; nothing here reads out of bounds or allocates from an unchecked length.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
from crc32c import crc32c as _crc32c

# CRC-32C of a batch's attributes-to-end: batch_crc(data, running_value=0) -> int
batch_crc = _crc32c

MAGIC = 2
HEADER_SIZE = 61
# Bytes before the batch_length field's payload: base_offset (8) + batch_length (4).
LOG_OVERHEAD = 12
# Smallest legal batch_length: the header after the batch_length field, empty body.
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
# Upper bound for a decompressed body, so a tiny zlib bomb cannot exhaust memory.
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

BASE_OFFSET_POS = 0
BATCH_LENGTH_POS = 8
LEADER_EPOCH_POS = 12
MAGIC_POS = 16
CRC_POS = 17
ATTRIBUTES_POS = 21
LAST_OFFSET_DELTA_POS = 23
BASE_TIMESTAMP_POS = 27
MAX_TIMESTAMP_POS = 35
PRODUCER_ID_POS = 43
PRODUCER_EPOCH_POS = 51
BASE_SEQUENCE_POS = 53
RECORD_COUNT_POS = 57

COMPRESSION_NONE = 0
COMPRESSION_ZLIB = 1
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
COMPRESSION_MASK = 0x07

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
# attributes .. record_count: the CRC-covered part of the header, packed first.
_TAIL_STRUCT = struct.Struct(">hiqqqhii")
_PREFIX_STRUCT = struct.Struct(">qiib")
_CRC_STRUCT = struct.Struct(">I")
_STAMP_STRUCT = struct.Struct(">qii")
_LENGTH_STRUCT = struct.Struct(">qi")


class CorruptRecordError(ValueError):
    """A record batch failed validation."""


class InvalidBatchLength(CorruptRecordError):
    """A length field is out of range or points past the end of the buffer."""


class UnsupportedMagic(CorruptRecordError):
    """The magic byte is not a batch format this code speaks."""


class CrcMismatch(CorruptRecordError):
    """The stored CRC does not match the batch bytes."""


class InvalidRecords(CorruptRecordError):
    """The body does not decode into the records the header announces."""


class UnsupportedCompression(CorruptRecordError):
    """The compression codec is unknown or its optional package is not installed."""


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Total bytes of the batch including base_offset and batch_length."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def last_sequence(self) -> int:
        return increment_sequence(self.base_sequence, self.record_count - 1)


class Record(NamedTuple):
    """A record to encode: absolute timestamp in ms, key, value and headers."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def increment_sequence(seq: int, delta: int) -> int:
    """Sequences wrap at int32 max, as Kafka's do."""
    if seq > 0x7FFFFFFF - delta:
        return delta - (0x7FFFFFFF - seq) - 1
    return seq + delta


def compress_body(codec: int, data: bytes) -> bytes:
    """A msgpack body compressed with ``codec`` (a COMPRESSION_* constant)."""
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_ZLIB:
        return zlib.compress(data, 1)
    if codec == COMPRESSION_LZ4:
        try:
            import lz4.frame
        except ImportError as e:
            raise UnsupportedCompression("lz4 compression needs the 'lz4' package") from e
        out: bytes = lz4.frame.compress(data)
        return out
    if codec == COMPRESSION_ZSTD:
        try:
            import zstandard
        except ImportError as e:
            raise UnsupportedCompression("zstd compression needs the 'zstandard' package") from e
        out2: bytes = zstandard.ZstdCompressor().compress(data)
        return out2
    raise UnsupportedCompression(f"unknown compression codec {codec}")


def decompress_body(codec: int, data: bytes | memoryview) -> bytes | memoryview:
    """A batch body as msgpack bytes; bounded by MAX_DECOMPRESSED_BYTES (no bombs)."""
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_ZLIB:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, MAX_DECOMPRESSED_BYTES)
        except zlib.error as e:
            raise InvalidRecords(f"zlib body does not decompress: {e}") from e
        if d.unconsumed_tail:
            raise InvalidRecords("decompressed body exceeds MAX_DECOMPRESSED_BYTES")
        if not d.eof or d.unused_data:
            raise InvalidRecords("zlib body is truncated or has trailing bytes")
        return out
    if codec == COMPRESSION_LZ4:
        try:
            import lz4.frame
        except ImportError as e:
            raise UnsupportedCompression("lz4 compression needs the 'lz4' package") from e
        try:
            lz_out: bytes = lz4.frame.decompress(bytes(data))
        except RuntimeError as e:
            raise InvalidRecords(f"lz4 body does not decompress: {e}") from e
        return lz_out
    if codec == COMPRESSION_ZSTD:
        try:
            import zstandard
        except ImportError as e:
            raise UnsupportedCompression("zstd compression needs the 'zstandard' package") from e
        try:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            z_out: bytes = dobj.decompress(bytes(data))
        except zstandard.ZstdError as e:
            raise InvalidRecords(f"zstd body does not decompress: {e}") from e
        if len(z_out) > MAX_DECOMPRESSED_BYTES:
            raise InvalidRecords("decompressed body exceeds MAX_DECOMPRESSED_BYTES")
        return z_out
    raise UnsupportedCompression(f"unknown compression codec {codec}")


def encode_batch_raw(
    body_records: Sequence[Sequence[Any]],
    *,
    base_timestamp: int,
    max_timestamp: int,
    compression: int = COMPRESSION_NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    last_offset_delta: int | None = None,
) -> bytes:
    """Encode records already in body form ``[timestamp_delta, key, value, headers]``.

    The fast path for producers: one msgpack.packb of the list, one struct pack.
    """
    count = len(body_records)
    if count == 0:
        raise ValueError("a batch needs at least one record")
    body = msgpack.packb(body_records, use_bin_type=True)
    if compression:
        body = compress_body(compression, body)
    tail = _TAIL_STRUCT.pack(
        compression & COMPRESSION_MASK,
        count - 1 if last_offset_delta is None else last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc = batch_crc(body, batch_crc(tail))
    prefix = _PREFIX_STRUCT.pack(
        base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body), partition_leader_epoch, MAGIC
    )
    return b"".join((prefix, _CRC_STRUCT.pack(crc), tail, body))


def encode_batch(
    records: Sequence[Record],
    *,
    compression: int = COMPRESSION_NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """Encode records with absolute timestamps into one batch."""
    if not records:
        raise ValueError("a batch needs at least one record")
    base_ts = records[0].timestamp
    max_ts = max(r.timestamp for r in records)
    body = [(r.timestamp - base_ts, r.key, r.value, [list(h) for h in r.headers]) for r in records]
    return encode_batch_raw(
        body,
        base_timestamp=base_ts,
        max_timestamp=max_ts,
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
    )


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at ``pos`` (no length or CRC checks)."""
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        raise InvalidBatchLength(
            f"need {HEADER_SIZE} header bytes at position {pos}, have {max(0, len(buf) - pos)}"
        )
    return BatchHeader._make(HEADER_STRUCT.unpack_from(buf, pos))


def _check_header(h: BatchHeader, available: int, pos: int) -> None:
    if h.batch_length < MIN_BATCH_LENGTH:
        raise InvalidBatchLength(
            f"batch at {pos}: batch_length {h.batch_length} < minimum {MIN_BATCH_LENGTH}"
        )
    if h.batch_length + LOG_OVERHEAD > available:
        raise InvalidBatchLength(
            f"batch at {pos}: batch_length {h.batch_length} points past the end of the buffer "
            f"({available - LOG_OVERHEAD} bytes available)"
        )
    if h.magic != MAGIC:
        raise UnsupportedMagic(f"batch at {pos}: magic {h.magic}, expected {MAGIC}")
    if h.record_count < 1:
        raise InvalidRecords(f"batch at {pos}: record_count {h.record_count} < 1")
    if h.last_offset_delta < h.record_count - 1:
        raise InvalidRecords(
            f"batch at {pos}: last_offset_delta {h.last_offset_delta} "
            f"< record_count - 1 ({h.record_count - 1})"
        )


def validate_batch_at(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, check_crc: bool = True
) -> BatchHeader:
    """Validate the batch starting at ``pos`` of ``buf``: lengths, magic, CRC.

    The batch may be followed by more bytes; its own length field decides its end.
    """
    h = parse_header(buf, pos)
    _check_header(h, len(buf) - pos, pos)
    if check_crc:
        end = pos + LOG_OVERHEAD + h.batch_length
        actual = batch_crc(memoryview(buf)[pos + ATTRIBUTES_POS : end])
        if actual != h.crc:
            raise CrcMismatch(f"batch at {pos}: stored crc {h.crc:#010x}, computed {actual:#010x}")
    return h


def validate_batch(buf: bytes | bytearray | memoryview) -> BatchHeader:
    """Validate a buffer holding exactly one batch (no record decoding)."""
    h = validate_batch_at(buf, 0)
    if h.batch_length + LOG_OVERHEAD != len(buf):
        raise InvalidBatchLength(
            f"batch_length {h.batch_length} disagrees with buffer size {len(buf)}"
        )
    return h


def walk_batches(
    buf: bytes | bytearray | memoryview, *, check_crc: bool = False
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each batch in a buffer of concatenated batches.

    Lengths are validated (and CRCs when asked); a partial trailing batch raises
    ``InvalidBatchLength``. Records are never decoded.
    """
    pos = 0
    n = len(buf)
    while pos < n:
        h = validate_batch_at(buf, pos, check_crc=check_crc)
        yield pos, h
        pos += LOG_OVERHEAD + h.batch_length


def stamp_batch(
    batch: bytes | bytearray | memoryview, base_offset: int, leader_epoch: int
) -> bytes:
    """Return ``batch`` with base_offset and partition_leader_epoch rewritten."""
    out = bytearray(batch)
    batch_length = _LENGTH_STRUCT.unpack_from(out, 0)[1]
    _STAMP_STRUCT.pack_into(out, 0, base_offset, batch_length, leader_epoch)
    return bytes(out)


def stamped_prefix(
    batch: bytes | bytearray | memoryview, base_offset: int, leader_epoch: int
) -> bytes:
    """The first 16 bytes of ``batch`` with offset and epoch stamped (for scatter writes)."""
    return _STAMP_STRUCT.pack(base_offset, _LENGTH_STRUCT.unpack_from(batch, 0)[1], leader_epoch)


def _is_bytes_or_none(x: object) -> bool:
    return x is None or type(x) is bytes


def decode_batch(buf: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[DecodedRecord]]:
    """Validate and decode one batch (exactly the buffer)."""
    h = validate_batch(buf)
    return h, _decode_body(h, memoryview(buf)[HEADER_SIZE:])


def decode_batches(
    buf: bytes | bytearray | memoryview,
) -> list[tuple[BatchHeader, list[DecodedRecord]]]:
    """Validate and decode every batch of a buffer of concatenated batches."""
    mv = memoryview(buf)
    out = []
    for pos, h in walk_batches(mv, check_crc=True):
        out.append((h, _decode_body(h, mv[pos + HEADER_SIZE : pos + h.size])))
    return out


def _decode_body(h: BatchHeader, body: memoryview) -> list[DecodedRecord]:
    raw = decompress_body(h.compression, body)
    limit = len(raw)
    try:
        items = msgpack.unpackb(
            raw,
            use_list=True,
            raw=False,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=limit,
            max_map_len=limit // 2,
            max_ext_len=limit,
            strict_map_key=True,
        )
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as e:
        raise InvalidRecords(f"body is not a msgpack record array: {e}") from e
    if type(items) is not list:
        raise InvalidRecords("body is not a msgpack array")
    if len(items) != h.record_count:
        raise InvalidRecords(f"header announces {h.record_count} records, body holds {len(items)}")
    base_ts = h.base_timestamp
    base_off = h.base_offset
    out: list[DecodedRecord] = []
    for i, rec in enumerate(items):
        if type(rec) is not list or len(rec) != 4:
            raise InvalidRecords(f"record {i} is not [timestamp_delta, key, value, headers]")
        ts_delta, key, value, headers = rec
        if type(ts_delta) is not int or not _is_bytes_or_none(key) or not _is_bytes_or_none(value):
            raise InvalidRecords(f"record {i} has a field of the wrong type")
        if type(headers) is not list:
            raise InvalidRecords(f"record {i} headers are not a list")
        hdrs: list[tuple[str, bytes]] = []
        for hv in headers:
            if (
                type(hv) is not list
                or len(hv) != 2
                or type(hv[0]) is not str
                or type(hv[1]) is not bytes
            ):
                raise InvalidRecords(f"record {i} has a malformed header")
            hdrs.append((hv[0], hv[1]))
        out.append(DecodedRecord(base_off + i, base_ts + ts_delta, key, value, hdrs))
    return out
