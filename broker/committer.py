"""The flush policy's trio shell: one committer per broker fsyncs dirty logs in a thread.

``group_commit`` (default): after an append the partition is dirty; the
committer task fsyncs every dirty log in one worker-thread call, then moves each
partition's high watermark to what is now durable and releases the acks=all
produce requests that were waiting (broker.group_commit decides who). Appends go
on while an fsync runs and share the next one. Consumers therefore only ever
see records that survive a power failure.

``interval``: the high watermark follows the log end at once (records are
visible as soon as they are written); the committer fsyncs dirty logs every
``flush_interval_ms``. An acks=all produce is answered after the append, so
durability is left to replication, as with Kafka's default settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from broker.group_commit import GroupCommit
from broker.log import LogClosed
from broker.partition import Partition
from client.observability import Histogram

logger = logging.getLogger(__name__)

OnVisible = Callable[[Partition, int], None]
Release = Callable[[], None]


def _flush_all(partitions: list[Partition]) -> list[tuple[Partition, int]]:
    """Worker thread: fsync each log; (partition, durable offset or -1 on failure)."""
    out: list[tuple[Partition, int]] = []
    for p in partitions:
        try:
            out.append((p, p.log.flush()))
        except LogClosed:
            out.append((p, -1))
        except OSError as exc:
            logger.error("%s: fsync failed, taking the partition offline: %s", p, exc)
            p.failed = True
            out.append((p, -1))
    return out


class Committer:
    def __init__(self, policy: str, interval_ms: int, on_visible: OnVisible) -> None:
        self.group_commit = policy == "group_commit"
        self.interval = interval_ms / 1000.0
        self.on_visible = on_visible
        self.core: GroupCommit[Partition, Release] = GroupCommit()
        self._interval_dirty: dict[Partition, None] = {}
        self._wake = trio.lowlevel.ParkingLot()
        self.flushes = 0
        # Seconds per flush of the dirty logs (broker.metrics: log_flush_seconds).
        self.flush_time = Histogram()

    def appended(self, partition: Partition) -> None:
        """Called right after records reached ``partition``'s log."""
        if self.group_commit:
            self.core.mark_dirty(partition)
            self._wake.unpark()
        else:
            gained = partition.advance_high_watermark(partition.log_end_offset)
            if gained:
                self.on_visible(partition, gained)
            self._interval_dirty[partition] = None

    def after_durable(self, release: Release) -> bool:
        """Call ``release`` once everything appended so far is durable; False if it already is
        (interval policy: the caller answers at once)."""
        if not self.group_commit:
            return False
        self.core.wait(release)
        self._wake.unpark()
        return True

    def forget(self, partition: Partition) -> None:
        self.core.forget(partition)
        self._interval_dirty.pop(partition, None)

    async def run(self) -> None:
        if self.group_commit:
            await self._run_group_commit()
        else:
            await self._run_interval()

    async def _run_group_commit(self) -> None:
        core = self.core
        while True:
            batch = core.begin()
            if batch is None:
                await self._wake.park()
                continue
            started = time.perf_counter()
            results = await trio.to_thread.run_sync(_flush_all, batch) if batch else []
            if batch:
                self.flush_time.observe(time.perf_counter() - started)
            self.flushes += 1
            for partition, durable in results:
                if durable >= 0:
                    gained = partition.advance_high_watermark(durable)
                    if gained:
                        self.on_visible(partition, gained)
            for release in core.finish():
                try:
                    release()
                except Exception:
                    logger.exception("releasing an acks=all produce failed")

    async def _run_interval(self) -> None:
        while True:
            await trio.sleep(self.interval)
            if not self._interval_dirty:
                continue
            batch = list(self._interval_dirty)
            self._interval_dirty.clear()
            started = time.perf_counter()
            await trio.to_thread.run_sync(_flush_all, batch)
            self.flush_time.observe(time.perf_counter() - started)
            self.flushes += 1
