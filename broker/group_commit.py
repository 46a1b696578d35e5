"""Group commit bookkeeping (sans-IO): which logs to fsync, and whom a finished fsync frees.

Appends mark their partition dirty; an ``acks=all`` produce additionally waits
on the current *generation*. One flush at a time: ``begin`` closes the current
generation and hands out every dirty partition; all appends made until then
are covered by that flush, and everything appended meanwhile joins the next
generation. ``finish`` reports the flush done and returns the waiters it
releases, in the order they started waiting. Many produce requests therefore
share one fsync, and a waiter is never released by a flush that began before
its append.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)
T = TypeVar("T")


class GroupCommit(Generic[P, T]):
    def __init__(self) -> None:
        self._dirty: dict[P, None] = {}
        self._open_generation = 1
        self._in_flight: int | None = None
        self.durable_generation = 0
        self._waiters: deque[tuple[int, T]] = deque()

    @property
    def busy(self) -> bool:
        """A flush has begun and not finished."""
        return self._in_flight is not None

    @property
    def pending(self) -> bool:
        """There is something a new flush would do (dirty logs, or waiters to release)."""
        return bool(self._dirty) or self._waiting_on_open()

    def _waiting_on_open(self) -> bool:
        return bool(self._waiters) and self._waiters[-1][0] == self._open_generation

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def mark_dirty(self, partition: P) -> None:
        """``partition`` was appended to (after its bytes reached its log)."""
        self._dirty[partition] = None

    def wait(self, token: T) -> None:
        """Release ``token`` after a flush covering everything appended so far."""
        self._waiters.append((self._open_generation, token))

    def begin(self) -> list[P] | None:
        """Start a flush: the partitions to fsync, or None (nothing to do, or one running).

        With waiters but nothing dirty (their logs were closed meanwhile) the list is
        empty: finishing that flush releases them.
        """
        if self._in_flight is not None or not self.pending:
            return None
        partitions = list(self._dirty)
        self._dirty.clear()
        self._in_flight = self._open_generation
        self._open_generation += 1
        return partitions

    def finish(self) -> list[T]:
        """The running flush completed (or failed: the caller tells each waiter); who is freed."""
        if self._in_flight is None:
            raise ValueError("no flush is running")
        self.durable_generation = self._in_flight
        self._in_flight = None
        done: list[T] = []
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.durable_generation:
            done.append(waiters.popleft()[1])
        return done

    def forget(self, partition: P) -> None:
        """The partition's log was closed: drop it from the dirty set."""
        self._dirty.pop(partition, None)
