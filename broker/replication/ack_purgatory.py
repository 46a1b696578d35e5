"""acks=all produce requests waiting for the high watermark (Kafka's DelayedProduce), sans-IO.

A request parks with, per partition it wrote to, the offset the high watermark
must reach (the end of its last batch + 1) and a deadline. Each advance of a
partition's high watermark reports the waiters that are now satisfied on every
partition; a partition that stops being led here settles its waiters' entry for
it at once (the caller answers that entry with an error); the deadline settles
whatever is left. A waiter is returned exactly once, when nothing of it is
pending any more, and then forgotten. No clock is read: ``expire`` takes ``now``.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from sortedcontainers import SortedList

W = TypeVar("W", bound=Hashable)
TopicPartition = tuple[str, int]


class _Entry:
    __slots__ = ("deadline", "pending", "seq")

    def __init__(self, pending: dict[TopicPartition, int], deadline: float, seq: int) -> None:
        self.pending = pending
        self.deadline = deadline
        self.seq = seq


class AckPurgatory(Generic[W]):
    def __init__(self) -> None:
        self._entries: dict[W, _Entry] = {}
        # tp -> sorted (required offset, seq, waiter)
        self._by_partition: dict[TopicPartition, SortedList] = {}
        self._deadlines: SortedList = SortedList()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, waiter: object) -> bool:
        return waiter in self._entries

    def park(self, waiter: W, required: Mapping[TopicPartition, int], deadline: float) -> None:
        """Wait until each partition's high watermark reaches its required offset."""
        if waiter in self._entries:
            raise ValueError("this waiter is parked already")
        if not required:
            raise ValueError("a waiter needs at least one partition")
        entry = _Entry(dict(required), deadline, next(self._seq))
        self._entries[waiter] = entry
        for tp, offset in entry.pending.items():
            self._by_partition.setdefault(tp, SortedList()).add((offset, entry.seq, waiter))
        self._deadlines.add((deadline, entry.seq, waiter))

    def pending(self, waiter: W) -> set[TopicPartition]:
        entry = self._entries.get(waiter)
        return set() if entry is None else set(entry.pending)

    def high_watermark(self, tp: TopicPartition, hw: int) -> list[W]:
        """``tp``'s high watermark reached ``hw``: the waiters now wholly satisfied."""
        queue = self._by_partition.get(tp)
        if not queue:
            return []
        done: list[W] = []
        while queue and queue[0][0] <= hw:
            _, _, waiter = queue.pop(0)
            entry = self._entries[waiter]
            del entry.pending[tp]
            if not entry.pending:
                done.append(waiter)
        if not queue:
            del self._by_partition[tp]
        for waiter in done:
            self._forget(waiter)
        return done

    def settle_partition(self, tp: TopicPartition) -> tuple[list[W], list[W]]:
        """``tp`` is no longer led here: (waiters that were waiting on it, those of them
        with nothing else pending — returned once and forgotten)."""
        queue = self._by_partition.pop(tp, None)
        if not queue:
            return [], []
        touched: list[W] = []
        done: list[W] = []
        for _, _, waiter in queue:
            entry = self._entries[waiter]
            del entry.pending[tp]
            touched.append(waiter)
            if not entry.pending:
                done.append(waiter)
        for waiter in done:
            self._forget(waiter)
        return touched, done

    def expire(self, now: float) -> list[tuple[W, set[TopicPartition]]]:
        """Waiters whose deadline is at or before ``now``, each with the partitions it
        was still waiting on (those time out)."""
        done: list[tuple[W, set[TopicPartition]]] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            waiter = self._deadlines[0][2]
            done.append((waiter, set(self._entries[waiter].pending)))
            self._forget(waiter)
        return done

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def drain(self) -> list[tuple[W, set[TopicPartition]]]:
        """Shutdown: every parked waiter, with the partitions it was still waiting on."""
        out = [(waiter, set(entry.pending)) for waiter, entry in self._entries.items()]
        for waiter, _ in out:
            self._forget(waiter)
        return out

    def _forget(self, waiter: W) -> None:
        entry = self._entries.pop(waiter)
        for tp, offset in entry.pending.items():
            queue = self._by_partition.get(tp)
            if queue is not None:
                queue.discard((offset, entry.seq, waiter))
                if not queue:
                    del self._by_partition[tp]
        self._deadlines.discard((entry.deadline, entry.seq, waiter))
