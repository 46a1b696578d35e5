"""Aggregate functions that can be computed incrementally across micro-batches.

A streaming aggregation keeps, for each group, a small *buffer* per aggregate
and merges each batch's partial buffers into it (Spark's partial/merge/final
aggregation). ``count``, ``sum``, ``min``, ``max``, ``mean``/``avg``, ``first``
and ``last`` are supported::

    from client.streaming import functions as F
    stream.group_by("page").agg(F.count().alias("views"), F.mean("latency_ms"))

``first``/``last`` follow arrival order: batch, then source partition, then offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

_KINDS = ("count", "count_col", "sum", "min", "max", "mean", "first", "last")


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return b if b < a else a


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


def _keep_first(a: Any, b: Any) -> Any:
    return a


def _keep_last(a: Any, b: Any) -> Any:
    return b


@dataclass(frozen=True, slots=True)
class AggFunc:
    """One incremental aggregate: its kind, input column and output name."""

    kind: str
    column: str | None
    name: str

    def alias(self, name: str) -> AggFunc:
        """The same aggregate under another output column name."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"alias must be a non-empty string, got {name!r}")
        return replace(self, name=name)

    @property
    def width(self) -> int:
        """Number of buffer columns this aggregate keeps."""
        return 2 if self.kind == "mean" else 1

    def partial_exprs(self, prefix: str) -> list[pl.Expr]:
        """Polars expressions computing this aggregate's buffers for one group."""
        c = pl.col(self.column) if self.column is not None else None
        if self.kind == "count":
            return [pl.len().cast(pl.Int64).alias(prefix)]
        if c is None:
            raise ValueError(f"{self.kind} needs a column")
        if self.kind == "count_col":
            return [c.count().cast(pl.Int64).alias(prefix)]
        if self.kind == "sum":
            return [c.sum().alias(prefix)]
        if self.kind == "min":
            return [c.min().alias(prefix)]
        if self.kind == "max":
            return [c.max().alias(prefix)]
        if self.kind == "mean":
            return [
                c.cast(pl.Float64).sum().alias(prefix + "_s"),
                c.count().cast(pl.Int64).alias(prefix + "_n"),
            ]
        if self.kind == "first":
            return [c.first().alias(prefix)]
        if self.kind == "last":
            return [c.last().alias(prefix)]
        raise ValueError(f"unknown aggregate {self.kind!r}")

    def mergers(self) -> list[Callable[[Any, Any], Any]]:
        """Per buffer column: how two buffers (earlier, later) combine."""
        if self.kind in ("count", "count_col", "sum"):
            return [_add]
        if self.kind == "min":
            return [_min]
        if self.kind == "max":
            return [_max]
        if self.kind == "mean":
            return [_add, _add]
        if self.kind == "first":
            return [_keep_first]
        return [_keep_last]

    def finalize_expr(self, buffer_names: list[str]) -> pl.Expr:
        """The output column computed from the buffer columns."""
        if self.kind == "mean":
            s, n = (pl.col(b) for b in buffer_names)
            return pl.when(n > 0).then(s / n).otherwise(None).alias(self.name)
        return pl.col(buffer_names[0]).alias(self.name)


def count(column: str | None = None) -> AggFunc:
    """Rows per group; with a column, its non-null values."""
    if column is None:
        return AggFunc("count", None, "count")
    return AggFunc("count_col", _col(column), f"count({column})")


def sum(column: str) -> AggFunc:
    """Sum of a numeric column (0 for a group of nulls)."""
    return AggFunc("sum", _col(column), f"sum({column})")


def min(column: str) -> AggFunc:
    """Smallest non-null value."""
    return AggFunc("min", _col(column), f"min({column})")


def max(column: str) -> AggFunc:
    """Largest non-null value."""
    return AggFunc("max", _col(column), f"max({column})")


def mean(column: str) -> AggFunc:
    """Arithmetic mean of the non-null values (null for none)."""
    return AggFunc("mean", _col(column), f"avg({column})")


avg = mean


def first(column: str) -> AggFunc:
    """The first value in arrival order."""
    return AggFunc("first", _col(column), f"first({column})")


def last(column: str) -> AggFunc:
    """The last value in arrival order."""
    return AggFunc("last", _col(column), f"last({column})")


def _col(column: Any) -> str:
    if not isinstance(column, str) or not column:
        raise TypeError(f"an aggregate takes a column name, got {column!r}")
    return column


__all__ = [
    "AggFunc",
    "avg",
    "count",
    "first",
    "last",
    "max",
    "mean",
    "min",
    "sum",
]
