"""Parked long-poll fetches (Kafka's fetch purgatory), sans-IO.

A fetch that found fewer than ``min_bytes`` parks here with the partitions it
reads, the bytes it still needs and its deadline. The broker reports every
advance of a partition's high watermark with the bytes it made visible; a
waiter completes as soon as the bytes reported on its partitions reach what it
needs, when one of its partitions changes leadership or disappears, or at its
deadline. Each completed waiter is returned exactly once and forgotten; the
caller then reads the logs again and answers. No clock is read: the caller
passes ``now`` to ``expire``.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from sortedcontainers import SortedList

W = TypeVar("W", bound=Hashable)
TopicPartition = tuple[str, int]


class _Parked:
    __slots__ = ("deadline", "needed", "partitions", "seq")

    def __init__(
        self, partitions: tuple[TopicPartition, ...], needed: int, deadline: float, seq: int
    ) -> None:
        self.partitions = partitions
        self.needed = needed
        self.deadline = deadline
        self.seq = seq


class FetchPurgatory(Generic[W]):
    def __init__(self) -> None:
        self._parked: dict[W, _Parked] = {}
        self._by_partition: dict[TopicPartition, dict[W, None]] = {}
        self._deadlines: SortedList = SortedList()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, waiter: object) -> bool:
        return waiter in self._parked

    def park(
        self, waiter: W, partitions: Iterable[TopicPartition], needed: int, deadline: float
    ) -> None:
        """Wait for ``needed`` more bytes on ``partitions``, at the latest until ``deadline``."""
        if waiter in self._parked:
            raise ValueError("this waiter is parked already")
        tps = tuple(dict.fromkeys(partitions))
        entry = _Parked(tps, max(1, needed), deadline, next(self._seq))
        self._parked[waiter] = entry
        for tp in tps:
            self._by_partition.setdefault(tp, {})[waiter] = None
        self._deadlines.add((deadline, entry.seq, waiter))

    def visible(self, tp: TopicPartition, nbytes: int) -> list[W]:
        """``nbytes`` became readable on ``tp``: the waiters that now have enough."""
        waiters = self._by_partition.get(tp)
        if not waiters or nbytes <= 0:
            return []
        done: list[W] = []
        for waiter in waiters:
            entry = self._parked[waiter]
            entry.needed -= nbytes
            if entry.needed <= 0:
                done.append(waiter)
        for waiter in done:
            self._forget(waiter)
        return done

    def wake_partition(self, tp: TopicPartition) -> list[W]:
        """Leadership of ``tp`` changed or it went away: every waiter on it completes."""
        waiters = list(self._by_partition.get(tp, ()))
        for waiter in waiters:
            self._forget(waiter)
        return waiters

    def expire(self, now: float) -> list[W]:
        """Waiters whose deadline is at or before ``now``, earliest first."""
        done: list[W] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            waiter = self._deadlines[0][2]
            done.append(waiter)
            self._forget(waiter)
        return done

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def cancel(self, waiter: W) -> bool:
        """Forget a waiter (its connection closed); False if it was not parked."""
        if waiter not in self._parked:
            return False
        self._forget(waiter)
        return True

    def wake_all(self) -> list[W]:
        """Shutdown: every parked waiter."""
        waiters = list(self._parked)
        for waiter in waiters:
            self._forget(waiter)
        return waiters

    def _forget(self, waiter: W) -> None:
        entry = self._parked.pop(waiter)
        for tp in entry.partitions:
            waiters = self._by_partition[tp]
            del waiters[waiter]
            if not waiters:
                del self._by_partition[tp]
        self._deadlines.remove((entry.deadline, entry.seq, waiter))
