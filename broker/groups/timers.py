"""Deadlines by key (sans-IO): set, cancel, and pop the ones that are due."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Timers(Generic[K]):
    """At most one deadline per key; setting a key again replaces its deadline."""

    def __init__(self) -> None:
        self._deadlines: dict[K, int] = {}
        self._heap: list[tuple[int, int, K]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def get(self, key: K) -> int | None:
        return self._deadlines.get(key)

    def set(self, key: K, deadline: int) -> None:
        if self._deadlines.get(key) == deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            self._compact()

    def cancel(self, key: K) -> None:
        self._deadlines.pop(key, None)

    def clear(self) -> None:
        self._deadlines.clear()
        self._heap.clear()

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._deadlines.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: int) -> list[K]:
        """Keys whose deadline is at or before ``now``, earliest first (they are removed)."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        self._heap = [(d, next(self._seq), k) for k, d in self._deadlines.items()]
        heapq.heapify(self._heap)
