"""Decoding fetched record batches into DataFrames."""

from __future__ import annotations

import json
from datetime import datetime

import msgpack
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.records import COMPRESSION_ZLIB, CorruptRecordError, Record, encode_batch
from client.streaming.formats import RecordDecoder, ValueFormat, to_dtype, to_schema


def batch(
    base: int,
    values: list[bytes | None],
    *,
    ts: int = 1000,
    keys: list[bytes | None] | None = None,
    headers: list[tuple[str, bytes]] = (),
    compression: int = 0,
) -> bytes:  # type: ignore[assignment]
    keys = keys or [None] * len(values)
    recs = [
        Record(ts + i, k, v, list(headers))
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
    ]
    return encode_batch(recs, base_offset=base, compression=compression)


def test_raw_decode_with_range_trimming() -> None:
    chunks = [
        batch(0, [b"a", b"b", b"c"]) + batch(3, [b"d", b"e"], compression=COMPRESSION_ZLIB),
        batch(5, [b"f"]),
    ]
    df = RecordDecoder().decode("t", 2, 1, 5, chunks)
    assert df.columns == ["key", "topic", "partition", "offset", "timestamp", "value"]
    assert df["value"].to_list() == [b"b", b"c", b"d", b"e"]
    assert df["offset"].to_list() == [1, 2, 3, 4]
    assert df["topic"].to_list() == ["t"] * 4 and df["partition"].to_list() == [2] * 4
    assert df["timestamp"].dtype == pl.Datetime("ms")
    assert df["timestamp"].dt.epoch("ms").to_list() == [1001, 1002, 1000, 1001]
    assert RecordDecoder().decode("t", 0, 7, 9, chunks).height == 0


def test_overlapping_chunks_are_not_duplicated() -> None:
    b0 = batch(0, [b"a", b"b"])
    df = RecordDecoder().decode("t", 0, 0, 2, [b0, b0])
    assert df["value"].to_list() == [b"a", b"b"]


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6), data=st.data())
def test_any_range_gives_exactly_its_offsets(sizes: list[int], data: st.DataObject) -> None:
    chunks = []
    base = 0
    for n in sizes:
        chunks.append(batch(base, [str(base + i).encode() for i in range(n)]))
        base += n
    start = data.draw(st.integers(0, base))
    end = data.draw(st.integers(start, base))
    df = RecordDecoder(ValueFormat.of("string")).decode("t", 0, start, end, [b"".join(chunks)])
    assert df["offset"].to_list() == list(range(start, end))
    assert df["value"].to_list() == [str(i) for i in range(start, end)]


def test_json_values_with_schema_and_keys() -> None:
    values = [
        json.dumps({"user": "a", "n": 1, "ts": 60_000}).encode(),
        json.dumps({"user": "b", "n": 2.5}).encode(),
        None,
    ]
    dec = RecordDecoder(
        ValueFormat.of("json", {"user": "string", "n": pl.Float64, "ts": "timestamp"}), "string"
    )
    df = dec.decode("t", 0, 0, 3, [batch(0, values, keys=[b"k1", None, b"k3"])])
    assert df["user"].to_list() == ["a", "b", None]
    assert df["n"].to_list() == [1.0, 2.5, None]
    assert df["ts"].to_list() == [datetime(1970, 1, 1, 0, 1), None, None]
    assert df["key"].to_list() == ["k1", None, "k3"]
    assert dec.schema() == dict(df.schema)


def test_malformed_json_gives_nulls() -> None:
    values = [b"{not json", json.dumps({"n": "x"}).encode(), json.dumps({"n": 3}).encode(), b"[1]"]
    dec = RecordDecoder(ValueFormat.of("json", {"n": pl.Int64}))
    df = dec.decode("t", 0, 0, 4, [batch(0, values)])
    assert df["n"].to_list() == [None, None, 3, None]


def test_msgpack_values() -> None:
    values = [msgpack.packb({"a": 1, "b": "x"}), msgpack.packb({"a": 2}), b"\xc1", None]
    dec = RecordDecoder(ValueFormat.of("msgpack", {"a": "long", "b": "string"}))
    df = dec.decode("t", 0, 0, 4, [batch(0, values)])
    assert df["a"].to_list() == [1, 2, None, None]
    assert df["b"].to_list() == ["x", None, None, None]


def test_value_field_replaces_metadata_column() -> None:
    dec = RecordDecoder(ValueFormat.of("json", {"timestamp": pl.Int64, "v": pl.Int64}))
    df = dec.decode("t", 0, 0, 1, [batch(0, [json.dumps({"timestamp": 7, "v": 1}).encode()])])
    assert df["timestamp"].to_list() == [7]
    assert df.columns.count("timestamp") == 1


def test_headers_column() -> None:
    dec = RecordDecoder(include_headers=True)
    df = dec.decode("t", 0, 0, 1, [batch(0, [b"v"], headers=[("h", b"1")])])
    assert df["headers"].to_list() == [[{"key": "h", "value": b"1"}]]


def test_corrupt_batch_raises() -> None:
    data = bytearray(batch(0, [b"a", b"b"]))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        RecordDecoder().decode("t", 0, 0, 2, [bytes(data)])


def test_formats_validation() -> None:
    with pytest.raises(ValueError):
        ValueFormat.of("json")
    with pytest.raises(ValueError):
        ValueFormat.of("raw", {"a": "long"})
    with pytest.raises(ValueError):
        ValueFormat.of("avro", {"a": "long"})
    with pytest.raises(TypeError):
        to_dtype("complex")
    with pytest.raises(TypeError):
        to_schema({})
    assert to_dtype(pl.Int64) == pl.Int64()
    assert to_schema({"a": "double"}) == {"a": pl.Float64()}
