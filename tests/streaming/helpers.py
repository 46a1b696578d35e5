"""Test helpers: a replayable in-memory source and small utilities."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import trio

from client.streaming.checkpoint import CheckpointDirectory
from client.streaming.sources import PartitionReader, Source


@dataclass(frozen=True)
class ListReader(PartitionReader):
    schema: dict[str, pl.DataType]

    def read(self, start: int, end: int, data: Any) -> pl.DataFrame:
        rows: Sequence[Mapping[str, Any]] = data
        if not rows:
            return pl.DataFrame(schema=self.schema)
        return pl.DataFrame(list(rows), schema=self.schema)


class ListSource(Source):
    """Partitions of rows that only grow: reading a range twice gives the same rows."""

    def __init__(self, schema: Mapping[str, pl.DataType], partitions: int = 1) -> None:
        self._schema = dict(schema)
        self.partitions: dict[str, list[Any]] = {str(p): [] for p in range(partitions)}
        self.lock = threading.Lock()
        self.description = f"ListSource[{partitions}]"
        self.fetches = 0

    def add(self, rows: Sequence[Mapping[str, Any]], partition: int = 0) -> None:
        with self.lock:
            self.partitions[str(partition)].extend(dict(r) for r in rows)

    def schema(self) -> dict[str, pl.DataType]:
        return dict(self._schema)

    async def open(
        self, nursery: trio.Nursery, checkpoint: CheckpointDirectory, index: int, now_ms: int
    ) -> dict[str, int]:
        return {p: 0 for p in self.partitions}

    async def latest_offsets(self, current: Mapping[str, int], now_ms: int) -> dict[str, int]:
        with self.lock:
            return {p: len(rows) for p, rows in self.partitions.items()}

    async def fetch(self, partition: str, start: int, end: int) -> Any:
        self.fetches += 1
        with self.lock:
            return list(self.partitions[partition][start:end])

    def reader(self, partition: str) -> PartitionReader:
        return ListReader(self._schema)

    async def wait_for_data(self, current: Mapping[str, int], timeout: float) -> None:
        await trio.sleep(min(timeout, 0.01))
