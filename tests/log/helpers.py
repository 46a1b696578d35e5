from __future__ import annotations

from collections.abc import Sequence

from client.records import Record, decode_batches, encode_batch


def batch(
    *values: bytes | None,
    key: bytes | None = b"k",
    ts: int = 1000,
    pid: int = -1,
    pepoch: int = -1,
    seq: int = -1,
    keys: Sequence[bytes | None] | None = None,
) -> bytes:
    ks = keys if keys is not None else [key] * len(values)
    return encode_batch(
        [Record(ts + i, k, v) for i, (k, v) in enumerate(zip(ks, values, strict=True))],
        producer_id=pid,
        producer_epoch=pepoch,
        base_sequence=seq,
    )


def values_from(buf: bytes) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for _, recs in decode_batches(buf) for r in recs]
