"""From fetched record batches to a Polars DataFrame (runs inside tasks).

A topic partition's range ``[start, end)`` arrives as the raw bytes of one or
more FETCH answers. ``RecordDecoder.decode`` validates each batch (lengths,
CRC), decodes the msgpack bodies straight into column lists — no per-record
objects — drops records outside the range, and builds the columns:

    key        Binary (or Utf8 with key format "string")
    value      Binary / Utf8 for the "raw" / "string" value formats, or, with
               "json" / "msgpack" and a schema, one column per schema field
    topic, partition, offset, timestamp (Datetime ms), headers (optional)

A schema field named like a metadata column replaces that column. JSON values
are parsed by Polars in one vectorised call; a batch holding malformed JSON
falls back to record-by-record parsing, where a bad record yields nulls
(Spark's permissive mode). Temporal schema fields are read as epoch
milliseconds.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import polars as pl

from client.records import (
    HEADER_SIZE,
    BatchHeader,
    InvalidRecords,
    decompress_body,
    walk_batches,
)

VALUE_FORMATS = ("raw", "string", "json", "msgpack")
KEY_FORMATS = ("raw", "string")
METADATA_COLUMNS = ("key", "topic", "partition", "offset", "timestamp", "headers")

_DTYPE_NAMES: dict[str, pl.DataType] = {
    "string": pl.Utf8(),
    "str": pl.Utf8(),
    "utf8": pl.Utf8(),
    "int": pl.Int64(),
    "long": pl.Int64(),
    "bigint": pl.Int64(),
    "int64": pl.Int64(),
    "integer": pl.Int32(),
    "int32": pl.Int32(),
    "double": pl.Float64(),
    "float": pl.Float64(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "boolean": pl.Boolean(),
    "bool": pl.Boolean(),
    "timestamp": pl.Datetime("ms"),
    "datetime": pl.Datetime("ms"),
    "date": pl.Date(),
    "binary": pl.Binary(),
    "bytes": pl.Binary(),
}

_DECODE_LOCK = threading.Lock()

HEADERS_DTYPE = pl.List(pl.Struct({"key": pl.Utf8, "value": pl.Binary}))


def to_dtype(spec: Any) -> pl.DataType:
    """A Polars dtype from a dtype, a dtype class, or a name (``"long"``, ``"string"``...)."""
    if isinstance(spec, pl.DataType):
        return spec
    if isinstance(spec, type) and issubclass(spec, pl.DataType):
        return spec()
    if isinstance(spec, str):
        dtype = _DTYPE_NAMES.get(spec.strip().lower())
        if dtype is not None:
            return dtype
    raise TypeError(
        f"not a column type: {spec!r} (use a polars dtype or one of {sorted(_DTYPE_NAMES)})"
    )


def to_schema(schema: Mapping[str, Any]) -> dict[str, pl.DataType]:
    """A validated ``{field: dtype}`` schema."""
    if not isinstance(schema, Mapping) or not schema:
        raise TypeError("a schema is a non-empty mapping of field name -> type")
    out: dict[str, pl.DataType] = {}
    for name, spec in schema.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"schema field names must be non-empty strings, got {name!r}")
        out[name] = to_dtype(spec)
    return out


def _wire_dtype(dtype: pl.DataType) -> pl.DataType:
    """How a field travels in JSON/msgpack: temporal types as integer milliseconds."""
    if isinstance(dtype, pl.Datetime | pl.Date | pl.Duration):
        return pl.Int64()
    return dtype


def _from_wire(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if isinstance(dtype, pl.Datetime):
        out = series.cast(pl.Datetime("ms"))
        if dtype.time_unit != "ms":
            out = out.dt.cast_time_unit(dtype.time_unit)
        if dtype.time_zone is not None:
            out = out.dt.replace_time_zone("UTC").dt.convert_time_zone(dtype.time_zone)
        return out
    if isinstance(dtype, pl.Date):
        return series.cast(pl.Datetime("ms")).dt.date()
    if isinstance(dtype, pl.Duration):
        return series.cast(pl.Duration("ms")).cast(dtype)
    return series


@dataclass(frozen=True, slots=True)
class ValueFormat:
    """How record values become columns (see the module doc)."""

    kind: str = "raw"
    schema: dict[str, pl.DataType] | None = None

    @classmethod
    def of(cls, kind: str, schema: Mapping[str, Any] | None = None) -> ValueFormat:
        if kind not in VALUE_FORMATS:
            raise ValueError(f"value format must be one of {VALUE_FORMATS}, got {kind!r}")
        if kind in ("json", "msgpack"):
            if schema is None:
                raise ValueError(f"the {kind} value format needs a schema")
            return cls(kind, to_schema(schema))
        if schema is not None:
            raise ValueError(f"the {kind} value format takes no schema")
        return cls(kind, None)

    def output_schema(self) -> dict[str, pl.DataType]:
        if self.schema is not None:
            return dict(self.schema)
        return {"value": pl.Utf8() if self.kind == "string" else pl.Binary()}

    def decode(self, values: list[Any]) -> list[pl.Series]:
        """Columns decoded from a list of ``bytes | None`` values."""
        raw = pl.Series("value", values, dtype=pl.Binary)
        if self.kind == "raw":
            return [raw]
        if self.kind == "string":
            return [raw.cast(pl.Utf8, strict=False)]
        schema = self.schema or {}
        wire = pl.Struct({k: _wire_dtype(v) for k, v in schema.items()})
        if self.kind == "json":
            try:
                decoded = raw.cast(pl.Utf8).str.json_decode(wire)
            except pl.exceptions.PolarsError:
                decoded = _permissive(values, schema, _json_loads)
        else:
            decoded = _permissive(values, schema, _msgpack_loads)
        fields = decoded.struct.unnest() if len(decoded) else pl.DataFrame(schema=wire.to_schema())
        return [_from_wire(fields.get_column(k), v).alias(k) for k, v in schema.items()]


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


def _msgpack_loads(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _permissive(values: list[Any], schema: Mapping[str, pl.DataType], loads: Any) -> pl.Series:
    """Record-by-record decoding: a value that does not parse (or is not a map)
    gives nulls; a field of the wrong type gives a null in that field."""
    rows: list[Mapping[str, Any] | None] = []
    for v in values:
        obj: Any = None
        if v is not None:
            try:
                obj = loads(v)
            except (ValueError, TypeError, msgpack.UnpackException):
                obj = None
        rows.append(obj if isinstance(obj, Mapping) else None)
    columns = []
    for name, dtype in schema.items():
        wire = _wire_dtype(dtype)
        cells = [None if r is None else r.get(name) for r in rows]
        try:
            columns.append(pl.Series(name, cells, dtype=wire, strict=False))
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            columns.append(pl.Series(name, [_cell(c, wire) for c in cells], dtype=wire))
    return pl.DataFrame(columns).to_struct("value")


def _cell(value: Any, dtype: pl.DataType) -> Any:
    try:
        return pl.Series([value], dtype=dtype, strict=False)[0]
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return None


def _body(h: BatchHeader, body: memoryview) -> tuple[Any, ...]:
    raw = decompress_body(h.compression, body)
    try:
        # Tuples, not lists: untracked by the cycle collector, they decode about
        # four times faster.
        items = msgpack.unpackb(raw, use_list=False, raw=False)
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        raise InvalidRecords(f"batch at offset {h.base_offset}: body does not decode: {e}") from e
    if type(items) is not tuple or len(items) != h.record_count:
        raise InvalidRecords(
            f"batch at offset {h.base_offset}: header announces {h.record_count} records"
        )
    return items


@dataclass(slots=True)
class _Columns:
    # per kept batch: its first kept offset, base timestamp and kept record count
    starts: list[int] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    # per record
    deltas: list[int] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordDecoder:
    """Turns a partition's fetched bytes into a DataFrame (picklable; see the module doc)."""

    value_format: ValueFormat = ValueFormat()
    key_format: str = "raw"
    include_headers: bool = False

    def schema(self) -> dict[str, pl.DataType]:
        """The columns ``decode`` produces."""
        out: dict[str, pl.DataType] = {
            "key": pl.Utf8() if self.key_format == "string" else pl.Binary(),
            "topic": pl.Utf8(),
            "partition": pl.Int32(),
            "offset": pl.Int64(),
            "timestamp": pl.Datetime("ms"),
        }
        if self.include_headers:
            out["headers"] = HEADERS_DTYPE
        for name, dtype in self.value_format.output_schema().items():
            out.pop(name, None)
            out[name] = dtype
        return out

    def _collect(self, chunks: Sequence[bytes], start: int, end: int) -> _Columns:
        cols = _Columns()
        covered = start
        for chunk in chunks:
            mv = memoryview(chunk)
            for pos, h in walk_batches(mv, check_crc=True):
                base = h.base_offset
                if h.next_offset <= covered or base >= end:
                    continue
                items = _body(h, mv[pos + HEADER_SIZE : pos + h.size])
                lo = max(0, covered - base)
                hi = min(len(items), end - base)
                if lo or hi < len(items):
                    items = items[lo:hi]
                if not items:
                    continue
                covered = base + hi
                try:
                    deltas, keys, values, headers = zip(*items, strict=True)
                except (ValueError, TypeError) as exc:
                    raise InvalidRecords(f"batch at offset {base}: malformed records") from exc
                cols.starts.append(base + lo)
                cols.bases.append(h.base_timestamp)
                cols.counts.append(hi - lo)
                cols.deltas.extend(deltas)
                cols.keys.extend(keys)
                cols.values.extend(values)
                if self.include_headers:
                    cols.headers.extend(headers)
        return cols

    def decode(
        self, topic: str, partition: int, start: int, end: int, chunks: Sequence[bytes]
    ) -> pl.DataFrame:
        """The records of ``[start, end)`` found in ``chunks`` (concatenated batches)."""
        # Decoding is Python holding the GIL: threads doing it at once only take
        # turns more expensively, so they queue here (and the collector switch
        # below stays consistent).
        with _DECODE_LOCK:
            collector_was_on = gc.isenabled()
            gc.disable()  # no cycle collections while millions of small objects appear
            try:
                cols = self._collect(chunks, start, end)
            finally:
                if collector_was_on:
                    gc.enable()
        n = len(cols.deltas)
        try:
            key = pl.Series("key", cols.keys, dtype=pl.Binary)
            if self.key_format == "string":
                key = key.cast(pl.Utf8, strict=False)
            starts = pl.Series(cols.starts, dtype=pl.Int64)
            counts = pl.Series(cols.counts, dtype=pl.Int64)
            run = pl.DataFrame({"s": starts, "n": counts, "b": cols.bases}).select(
                pl.int_ranges("s", pl.col("s") + pl.col("n")).explode().alias("offset"),
                pl.col("b").repeat_by("n").explode().alias("b"),
            )
            if n == 0:
                run = pl.DataFrame(schema={"offset": pl.Int64, "b": pl.Int64})
            timestamps = run.get_column("b") + pl.Series(cols.deltas, dtype=pl.Int64)
            series: dict[str, pl.Series] = {
                "key": key,
                "topic": pl.repeat(topic, n, dtype=pl.Utf8, eager=True).alias("topic"),
                "partition": pl.repeat(partition, n, dtype=pl.Int32, eager=True).alias("partition"),
                "offset": run.get_column("offset"),
                "timestamp": timestamps.cast(pl.Datetime("ms")).alias("timestamp"),
            }
            if self.include_headers:
                series["headers"] = pl.Series(
                    "headers",
                    [[{"key": k, "value": v} for k, v in hs] for hs in cols.headers],
                    dtype=HEADERS_DTYPE,
                )
            for s in self.value_format.decode(cols.values):
                series.pop(s.name, None)
                series[s.name] = s
        except (TypeError, ValueError) as exc:
            raise InvalidRecords(f"{topic}-{partition}: records of the wrong type: {exc}") from exc
        return pl.DataFrame(list(series.values()))
