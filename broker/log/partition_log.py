"""The partition log: an append-only sequence of segments with indexes and checkpoints.

Thread-safety: every public method takes the log's lock, except that flush() does
its fsyncs and compaction does its reading and rewriting outside it, so appends go
on meanwhile. No method reads a clock; callers pass ``now_ms``.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left, bisect_right
from typing import NamedTuple

from broker.log.checkpoint import fsync_dir, read_checkpoint, write_checkpoint
from broker.log.config import LogConfig
from broker.log.errors import (
    CorruptCheckpoint,
    InvalidOffsets,
    LogClosed,
    LogError,
    OffsetOutOfRange,
    RecordBatchTooLarge,
)
from broker.log.file_cache import DEFAULT_FILE_CACHE, FileCache
from broker.log.leader_epoch_cache import LeaderEpochCache
from broker.log.producer_state import ProducerStateManager
from broker.log.recovery import segment_bases, tidy_directory
from broker.log.segment import Segment
from client.records import (
    HEADER_STRUCT,
    LOG_OVERHEAD,
    BatchHeader,
    stamped_prefix,
    validate_batch,
    validate_batch_at,
)

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN_FILE = ".clean_shutdown"
OFFSETS_CHECKPOINT_FILE = "offsets.checkpoint"
LEADER_EPOCH_FILE = "leader-epoch-checkpoint"
_OFFSETS_VERSION = "offsets v1"
_MAX_RELATIVE = 0xFFFFFFFF


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    duplicate: bool = False


def partition_dir(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, f"{topic}-{partition}")


class Log:
    """One partition's log. Create with :meth:`Log.open`."""

    def __init__(
        self, directory: str, config: LogConfig, file_cache: FileCache, topic: str, partition: int
    ) -> None:
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.file_cache = file_cache
        self._lock = threading.RLock()
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self._next_offset = 0
        self._high_watermark = 0
        self.recovery_point = 0
        self._checkpointed_rp_base = -1
        self._unflushed: dict[int, Segment] = {}
        self._dir_dirty = False
        self._last_flush_ms: int | None = None
        self._marker_present = False
        self._closed = False
        # Bumped by every change that invalidates a concurrent compaction's view.
        self.generation = 0
        self.epochs = LeaderEpochCache(os.path.join(directory, LEADER_EPOCH_FILE))
        self.producers = ProducerStateManager(directory)

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        data_dir: str,
        topic: str,
        partition: int,
        config: LogConfig | None = None,
        file_cache: FileCache | None = None,
    ) -> Log:
        directory = partition_dir(data_dir, topic, partition)
        created = not os.path.isdir(directory)
        os.makedirs(directory, exist_ok=True)
        self = cls(
            directory, config or LogConfig(), file_cache or DEFAULT_FILE_CACHE, topic, partition
        )
        self._load(created)
        return self

    def _load(self, created: bool) -> None:
        cfg = self.config
        rebuild = tidy_directory(self.dir)
        clean = os.path.exists(os.path.join(self.dir, CLEAN_SHUTDOWN_FILE)) and not rebuild
        self._marker_present = os.path.exists(os.path.join(self.dir, CLEAN_SHUTDOWN_FILE))
        log_start, rp = self._read_offsets_checkpoint()
        bases = segment_bases(self.dir)
        if log_start is None:
            log_start = bases[0] if bases else 0
            clean = False
        # Segments wholly below the log start are leftovers of an interrupted deletion.
        while len(bases) > 1 and bases[1] <= log_start:
            Segment(
                self.dir, bases.pop(0), self.file_cache, 0, cfg.index_interval_bytes
            ).delete_files()
        for b in bases:
            size = os.path.getsize(os.path.join(self.dir, f"{b:020d}.log"))
            self.segments.append(
                Segment(self.dir, b, self.file_cache, size, cfg.index_interval_bytes)
            )
        self._bases = list(bases)
        self.log_start_offset = log_start
        self.epochs = LeaderEpochCache.load(self.epochs.path)
        if not self.segments:
            self._add_segment(log_start)
            self._dir_dirty = True
            if created:
                fsync_dir(os.path.dirname(self.dir) or ".")
        if clean:
            active = self.segments[-1]
            active.ensure_indexes()
            self._next_offset = active.next_offset()
            self._load_producers(self._next_offset, replay=True)
        else:
            self._recover(rp or 0)
        self.epochs.truncate_from_end(self._next_offset)
        self.epochs.truncate_from_start(self.log_start_offset)
        self.recovery_point = self._next_offset
        self._checkpointed_rp_base = -1
        self._high_watermark = min(self._high_watermark, self._next_offset)
        if not clean:
            self._write_offsets_checkpoint()

    def _read_offsets_checkpoint(self) -> tuple[int | None, int | None]:
        path = os.path.join(self.dir, OFFSETS_CHECKPOINT_FILE)
        try:
            lines = read_checkpoint(path)
        except CorruptCheckpoint as e:
            log.warning("%s: %s; recovering from the first segment", self.dir, e)
            return None, None
        if not lines or lines[0] != _OFFSETS_VERSION or len(lines) != 3:
            return None, None
        try:
            return int(lines[1].split()[1]), int(lines[2].split()[1])
        except (IndexError, ValueError):
            return None, None

    def _write_offsets_checkpoint(self) -> None:
        write_checkpoint(
            os.path.join(self.dir, OFFSETS_CHECKPOINT_FILE),
            [
                _OFFSETS_VERSION,
                f"log_start_offset {self.log_start_offset}",
                f"recovery_point {self.recovery_point}",
            ],
        )
        self._checkpointed_rp_base = self._segment_index_for(self.recovery_point)

    def _load_producers(self, upto: int, *, replay: bool) -> int:
        """Load the newest snapshot <= ``upto``; replay batches after it if asked.

        Returns the snapshot's offset (the log start if none).
        """
        self.producers.delete_snapshots(above=upto)
        self.producers.clear()
        start = self.log_start_offset
        for off in reversed(self.producers.snapshot_offsets()):
            if off >= self.log_start_offset and self.producers.load_snapshot(off):
                start = off
                break
        if replay:
            self._replay_producers(start, upto)
        return start

    def _replay_producers(self, start: int, end: int) -> None:
        if start >= end:
            return
        i = max(0, bisect_right(self._bases, start) - 1)
        for seg in self.segments[i:]:
            if seg.base_offset >= end:
                break
            found = seg.find(start) if start > seg.base_offset else None
            pos = found[0] if found else 0
            for _, h in seg.scan(pos):
                if h.base_offset >= end:
                    break
                if h.base_offset >= start:
                    self.producers.replay(h)

    def _recover(self, recovery_point: int) -> None:
        """Crash recovery: CRC-check every batch from the recovery point's segment on."""
        start_i = self._segment_index_for(max(recovery_point, self.log_start_offset))
        first_scan_offset = self.segments[start_i].base_offset
        snap = self._load_producers(first_scan_offset, replay=False)
        self._replay_producers(snap, first_scan_offset)

        def on_batch(h: BatchHeader) -> None:
            if h.producer_id >= 0:
                self.producers.update(h, h.base_offset)
            if h.partition_leader_epoch > self.epochs.latest_epoch:
                self.epochs.assign(h.partition_leader_epoch, h.base_offset, save=False)

        prev_next = self.segments[start_i - 1].next_offset() if start_i > 0 else -1
        i = start_i
        while i < len(self.segments):
            seg = self.segments[i]
            if seg.base_offset < prev_next:
                self._drop_segments_from(i, "segment overlaps the previous one")
                break
            file_size = seg.size
            valid = seg.recover(check_crc=True, on_batch=on_batch)
            if valid < file_size:
                log.warning(
                    "%s: truncating %d corrupt or torn bytes at position %d of %s",
                    self.dir,
                    file_size - valid,
                    valid,
                    seg.log_path,
                )
                seg.truncate_file(valid)
                seg.size = valid
                self._drop_segments_from(i + 1, "after a truncated segment")
            elif seg is not self.segments[-1]:
                seg.save_indexes(sync=True)
            # What survived the crash may sit only in the page cache: make it durable
            # before the recovery point moves past it.
            seg.sync()
            prev_next = seg.next_offset()
            i += 1
        active = self.segments[-1]
        self._next_offset = max(active.next_offset(), active.base_offset)
        if len(self.segments) == 1 and self._next_offset < self.log_start_offset:
            self._next_offset = self.log_start_offset
        self.epochs.save()
        fsync_dir(self.dir)

    def _drop_segments_from(self, i: int, why: str) -> None:
        for seg in self.segments[i:]:
            log.warning(
                "%s: deleting segment %s (%d bytes) %s", self.dir, seg.log_path, seg.size, why
            )
            seg.delete_files()
        del self.segments[i:]
        del self._bases[i:]

    def _segment_index_for(self, offset: int) -> int:
        return max(0, bisect_right(self._bases, offset) - 1)

    def _add_segment(self, base_offset: int) -> Segment:
        seg = Segment.create(
            self.dir, base_offset, self.file_cache, self.config.index_interval_bytes
        )
        self.segments.append(seg)
        self._bases.append(base_offset)
        self._dir_dirty = True
        return seg

    # --------------------------------------------------------------- properties

    @property
    def log_end_offset(self) -> int:
        return self._next_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @high_watermark.setter
    def high_watermark(self, value: int) -> None:
        with self._lock:
            self._high_watermark = max(self.log_start_offset, min(value, self._next_offset))

    @property
    def active_segment(self) -> Segment:
        return self.segments[-1]

    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self.segments)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed(self.dir)

    def _before_mutation(self) -> None:
        if self._closed:
            raise LogClosed(self.dir)
        if self._marker_present:
            os.unlink(os.path.join(self.dir, CLEAN_SHUTDOWN_FILE))
            fsync_dir(self.dir)
            self._marker_present = False

    # ------------------------------------------------------------------ append

    def append(self, batch: bytes | memoryview, leader_epoch: int, now_ms: int) -> AppendResult:
        """Validate (header + CRC), assign offsets, stamp and write one batch as a leader."""
        n = len(batch)
        if n > self.config.max_batch_bytes:
            raise RecordBatchTooLarge(f"batch of {n} bytes > max_batch_bytes")
        h = validate_batch(batch)
        with self._lock:
            self._before_mutation()
            if h.producer_id >= 0:
                dup = self.producers.check(h)
                if dup is not None:
                    return AppendResult(dup.base_offset, dup.last_offset, True)
            base = self._next_offset
            seg = self._maybe_roll(n, h.last_offset_delta, now_ms)
            mv = memoryview(batch)
            seg.write([stamped_prefix(mv, base, leader_epoch), mv[16:]], seg.size, n)
            self._after_write(seg, base, h, n, now_ms)
            if leader_epoch > self.epochs.latest_epoch:
                self.epochs.assign(leader_epoch, base)
            self._maybe_flush(now_ms)
            return AppendResult(base, base + h.last_offset_delta)

    def append_many(
        self, batches: list[bytes], leader_epoch: int, now_ms: int
    ) -> list[AppendResult]:
        """Append several leader batches with one scatter write per segment (and per 500)."""
        headers = []
        for b in batches:
            if len(b) > self.config.max_batch_bytes:
                raise RecordBatchTooLarge(f"batch of {len(b)} bytes > max_batch_bytes")
            headers.append(validate_batch(b))
        results: list[AppendResult] = []
        with self._lock:
            self._before_mutation()
            pending: list[bytes | memoryview] = []
            seg = self.segments[-1]
            start_pos = seg.size
            try:
                for b, h in zip(batches, headers, strict=True):
                    if h.producer_id >= 0:
                        dup = self.producers.check(h)
                        if dup is not None:
                            results.append(AppendResult(dup.base_offset, dup.last_offset, True))
                            continue
                    n = len(b)
                    base = self._next_offset
                    if pending and (
                        len(pending) >= 1000
                        or self._roll_needed(seg, n, base, h.last_offset_delta, now_ms)
                    ):
                        seg.write(pending, start_pos, seg.size - start_pos)
                        pending = []
                    new = self._maybe_roll(n, h.last_offset_delta, now_ms)
                    if new is not seg:
                        seg, start_pos = new, new.size
                    elif not pending:
                        start_pos = seg.size
                    mv = memoryview(b)
                    pending.append(stamped_prefix(mv, base, leader_epoch))
                    pending.append(mv[16:])
                    # Bookkeeping (positions, indexes) runs ahead of the scatter write.
                    self._after_write(seg, base, h, n, now_ms)
                    results.append(AppendResult(base, base + h.last_offset_delta))
                if pending:
                    seg.write(pending, start_pos, seg.size - start_pos)
            except LogError:
                # A producer-state rejection mid-way: the batches before it are booked,
                # so write them before raising, keeping the file and bookkeeping in step.
                if pending:
                    seg.write(pending, start_pos, seg.size - start_pos)
                self._note_leader_epoch(results, leader_epoch)
                raise
            except OSError:
                # Bookkeeping already counts unwritten bytes: take the log offline, as
                # Kafka does on a log directory failure; reopening recovers it.
                log.error("%s: write failed, closing the log", self.dir)
                self.abandon()
                raise
            self._note_leader_epoch(results, leader_epoch)
            self._maybe_flush(now_ms)
        return results

    def _note_leader_epoch(self, results: list[AppendResult], leader_epoch: int) -> None:
        first = next((r for r in results if not r.duplicate), None)
        if first is not None and leader_epoch > self.epochs.latest_epoch:
            self.epochs.assign(leader_epoch, first.base_offset)

    def append_as_follower(self, batches: bytes | memoryview, now_ms: int) -> AppendResult | None:
        """Append replicated batches keeping their offsets and epochs.

        The buffer holds concatenated batches; each must start at or after the log end
        and after the previous batch. Returns the first and last offsets written.
        """
        mv = memoryview(batches)
        headers: list[tuple[int, BatchHeader]] = []
        pos = 0
        with self._lock:
            expect = self._next_offset
            while pos < len(mv):
                h = validate_batch_at(mv, pos)
                if h.base_offset < expect:
                    raise InvalidOffsets(
                        f"follower batch at offset {h.base_offset} < expected {expect}"
                    )
                if h.size > self.config.max_batch_bytes:
                    raise RecordBatchTooLarge(f"batch of {h.size} bytes > max_batch_bytes")
                headers.append((pos, h))
                expect = h.next_offset
                pos += h.size
            if not headers:
                return None
            self._before_mutation()
            for p, h in headers:
                n = h.size
                seg = self._maybe_roll(n, h.last_offset_delta, now_ms, base=h.base_offset)
                seg.write([mv[p : p + n]], seg.size, n)
                self._after_write(seg, h.base_offset, h, n, now_ms)
                if h.partition_leader_epoch > self.epochs.latest_epoch:
                    self.epochs.assign(h.partition_leader_epoch, h.base_offset)
            self._maybe_flush(now_ms)
            return AppendResult(headers[0][1].base_offset, headers[-1][1].last_offset)

    def _roll_needed(
        self, seg: Segment, n: int, first: int, last_offset_delta: int, now_ms: int
    ) -> bool:
        cfg = self.config
        return seg.size > 0 and (
            seg.size + n > cfg.segment_bytes
            or (seg.created_ms is not None and now_ms - seg.created_ms >= cfg.segment_ms)
            or first + last_offset_delta - seg.base_offset > _MAX_RELATIVE
        )

    def _maybe_roll(
        self, n: int, last_offset_delta: int, now_ms: int, base: int | None = None
    ) -> Segment:
        seg = self.segments[-1]
        first = self._next_offset if base is None else base
        if self._roll_needed(seg, n, first, last_offset_delta, now_ms):
            seg = self._roll_locked(first)
        elif base is not None and seg.size == 0 and base != seg.base_offset:
            # An empty active segment is recreated at the follower's first offset.
            self._replace_empty_active(base)
            seg = self.segments[-1]
        if seg.created_ms is None:
            seg.created_ms = now_ms
        return seg

    def _replace_empty_active(self, base: int) -> None:
        old = self.segments.pop()
        self._bases.pop()
        old.delete_files()
        self._add_segment(base)

    def _after_write(self, seg: Segment, base: int, h: BatchHeader, n: int, now_ms: int) -> None:
        pos = seg.size
        if pos == 0 or seg.bytes_since_index >= self.config.index_interval_bytes:
            seg.offset_index.append(base - seg.base_offset, pos)
            if pos and seg.max_timestamp >= 0:
                seg.time_index.maybe_append(seg.max_timestamp, seg.max_timestamp_rel)
            seg.bytes_since_index = 0
        seg.bytes_since_index += n
        if h.max_timestamp > seg.max_timestamp:
            seg.max_timestamp = h.max_timestamp
            seg.max_timestamp_rel = base - seg.base_offset
        seg.size = pos + n
        nxt = base + h.last_offset_delta + 1
        self._next_offset = nxt
        seg.next_offset_cache = nxt
        if h.producer_id >= 0:
            self.producers.update(h, base)
        self._unflushed[seg.base_offset] = seg

    def _roll_locked(self, new_base: int) -> Segment:
        old = self.segments[-1]
        old.save_indexes(sync=True)
        self.producers.write_snapshot(new_base)
        self.producers.delete_snapshots(below=self._oldest_snapshot_to_keep(new_base))
        return self._add_segment(new_base)

    def _oldest_snapshot_to_keep(self, newest: int) -> int:
        offs = [o for o in self.producers.snapshot_offsets() if o <= newest]
        return offs[-2] if len(offs) >= 2 else 0

    def roll(self, now_ms: int) -> None:
        """Start a new active segment at the log end (no-op if the active one is empty)."""
        with self._lock:
            self._before_mutation()
            if self.segments[-1].size > 0:
                self._roll_locked(self._next_offset).created_ms = now_ms

    # ------------------------------------------------------------------- flush

    def _maybe_flush(self, now_ms: int) -> None:
        policy = self.config.flush
        if policy == "every":
            self._flush_locked()
        elif policy == "interval":
            if self._last_flush_ms is None:
                self._last_flush_ms = now_ms
            elif now_ms - self._last_flush_ms >= self.config.flush_interval_ms:
                self._last_flush_ms = now_ms
                self._flush_locked()

    def _flush_locked(self) -> None:
        for seg in self._unflushed.values():
            seg.sync()
        self._unflushed.clear()
        if self._dir_dirty:
            fsync_dir(self.dir)
            self._dir_dirty = False
        self._advance_recovery_point(self._next_offset)

    def _advance_recovery_point(self, target: int) -> None:
        target = min(target, self._next_offset)
        if target > self.recovery_point:
            self.recovery_point = target
            # Rewriting the checkpoint only when it crosses a segment keeps flushes cheap
            # while bounding a crash rescan to the newest segments.
            if self._segment_index_for(target) != self._checkpointed_rp_base:
                self._write_offsets_checkpoint()

    def flush(self) -> int:
        """fsync everything appended so far; return the offset up to which data is durable.

        The fsyncs run without the lock so that appends continue (group commit).
        """
        with self._lock:
            self._check_open()
            segs = list(self._unflushed.values())
            self._unflushed.clear()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            target = self._next_offset
            gen = self.generation
            pinned = [(s.log_path, self.file_cache.acquire(s.log_path)) for s in segs]
        try:
            for _, fd in pinned:
                os.fdatasync(fd)
            if dir_dirty:
                fsync_dir(self.dir)
        finally:
            for path, fd in pinned:
                self.file_cache.release(path, fd)
        with self._lock:
            if gen == self.generation and not self._closed:
                self._advance_recovery_point(target)
            return min(target, self._next_offset)

    # -------------------------------------------------------------------- read

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Whole batches from the one containing ``offset``: at least one batch, even if
        larger than ``max_bytes``; only batches ending before ``max_offset`` if given."""
        with self._lock:
            self._check_open()
            if offset < self.log_start_offset or offset > self._next_offset:
                raise OffsetOutOfRange(offset, self.log_start_offset, self._next_offset)
            if offset == self._next_offset or (max_offset is not None and offset >= max_offset):
                return b""
            i = self._segment_index_for(offset)
            while i < len(self.segments):
                seg = self.segments[i]
                found = seg.find(offset)
                if found is not None:
                    return self._read_from(seg, found[0], found[1], max_bytes, max_offset)
                i += 1
            return b""

    def _read_from(
        self, seg: Segment, pos: int, first: BatchHeader, max_bytes: int, max_offset: int | None
    ) -> bytes:
        if max_offset is not None and first.last_offset >= max_offset:
            return b""
        want = min(max(max_bytes, first.size), seg.size - pos)
        data = seg.pread(want, pos)
        end = first.size
        n = len(data)
        unpack = HEADER_STRUCT.unpack_from
        while end + 61 <= n:
            f = unpack(data, end)
            size = f[1] + LOG_OVERHEAD
            if end + size > n or (max_offset is not None and f[0] + f[6] >= max_offset):
                break
            end += size
        return data if end == n else data[:end]

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """Base offset of the earliest batch whose max_timestamp >= ``timestamp``."""
        with self._lock:
            self._check_open()
            for seg in self.segments:
                off = seg.find_by_timestamp(timestamp)
                if off is not None:
                    return max(off, self.log_start_offset)
            return None

    # ------------------------------------------------------- truncation, epochs

    def truncate_to(self, offset: int) -> None:
        """Remove every batch whose last offset is >= ``offset``."""
        with self._lock:
            if offset >= self._next_offset:
                return
            if offset < self.log_start_offset:
                self.truncate_fully_and_start_at(offset)
                return
            self._before_mutation()
            self.generation += 1
            # Segments starting at or after ``offset`` go entirely (even if compaction
            # emptied them); the one before is cut at the first batch reaching ``offset``.
            k = bisect_left(self._bases, offset)
            if k == 0:
                self._drop_segments_from(0, "truncated")
                self._add_segment(offset)
            else:
                self._drop_segments_from(k, "truncated")
                seg = self.segments[-1]
                found = seg.find(offset)
                if found is not None:
                    seg.truncate_to(found[0])
            self._dir_dirty = True
            active = self.segments[-1]
            self._next_offset = max(active.next_offset(), self.log_start_offset)
            active.next_offset_cache = self._next_offset
            self._after_truncation()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and restart the log, empty, at ``offset``."""
        with self._lock:
            self._before_mutation()
            self.generation += 1
            self._drop_segments_from(0, "full truncation")
            self._add_segment(offset)
            self.log_start_offset = offset
            self._next_offset = offset
            self.epochs.clear()
            self._after_truncation()

    def _after_truncation(self) -> None:
        self.epochs.truncate_from_end(self._next_offset)
        self._unflushed = {s.base_offset: s for s in self.segments[-1:]}
        self.recovery_point = min(self.recovery_point, self._next_offset)
        self._high_watermark = min(self._high_watermark, self._next_offset)
        self._load_producers(self._next_offset, replay=True)
        self._write_offsets_checkpoint()
        fsync_dir(self.dir)
        self._dir_dirty = False

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetsForLeaderEpoch: (largest epoch <= ``epoch``, the offset where it ended)."""
        with self._lock:
            return self.epochs.end_offset_for_epoch(epoch, self._next_offset)

    @property
    def latest_epoch(self) -> int:
        return self.epochs.latest_epoch

    # ------------------------------------------------------------ retention

    def apply_retention(self, now_ms: int) -> int:
        """Delete whole non-active segments past retention_ms / retention_bytes.

        Returns the number of segments deleted.
        """
        cfg = self.config
        with self._lock:
            self._check_open()
            if not cfg.delete:
                return self._delete_below_start()
            n = 0
            total = sum(s.size for s in self.segments)
            while len(self.segments) > 1:
                seg = self.segments[0]
                seg.ensure_indexes()
                by_time = cfg.retention_ms >= 0 and seg.max_timestamp < now_ms - cfg.retention_ms
                by_size = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
                below_start = self.segments[1].base_offset <= self.log_start_offset
                if not (by_time or by_size or below_start):
                    break
                total -= seg.size
                self._delete_first_segment()
                n += 1
            return n

    def _delete_below_start(self) -> int:
        n = 0
        while len(self.segments) > 1 and self.segments[1].base_offset <= self.log_start_offset:
            self._delete_first_segment()
            n += 1
        return n

    def _delete_first_segment(self) -> None:
        self._before_mutation()
        self.generation += 1
        nxt = self.segments[1].base_offset
        if nxt > self.log_start_offset:
            self.log_start_offset = nxt
            self._high_watermark = max(self._high_watermark, nxt)
            self.recovery_point = max(self.recovery_point, nxt)
        # The checkpoint moves first so that a crash never resurrects deleted data.
        self._write_offsets_checkpoint()
        seg = self.segments.pop(0)
        self._bases.pop(0)
        self._unflushed.pop(seg.base_offset, None)
        seg.delete_files()
        self.epochs.truncate_from_start(self.log_start_offset)
        self.producers.delete_snapshots(below=self.segments[0].base_offset)

    def delete_records(self, offset: int) -> int:
        """Move the log start to ``offset`` (<= high watermark) and drop segments below it."""
        with self._lock:
            self._before_mutation()
            if offset > self._high_watermark or offset < 0:
                raise OffsetOutOfRange(offset, self.log_start_offset, self._high_watermark)
            if offset > self.log_start_offset:
                self.generation += 1
                self.log_start_offset = offset
                self._write_offsets_checkpoint()
                self.epochs.truncate_from_start(offset)
                self._delete_below_start()
            return self.log_start_offset

    # ------------------------------------------------------------ close

    def close(self) -> None:
        """Clean shutdown: indexes, producer snapshot, checkpoints, then the marker."""
        with self._lock:
            if self._closed:
                return
            active = self.segments[-1]
            active.save_indexes(sync=True)
            for seg in self._unflushed.values():
                seg.sync()
            self._unflushed.clear()
            self.producers.write_snapshot(self._next_offset)
            self.recovery_point = self._next_offset
            self._write_offsets_checkpoint()
            self.epochs.save()
            marker = os.path.join(self.dir, CLEAN_SHUTDOWN_FILE)
            with open(marker, "wb"):
                pass
            fsync_dir(self.dir)
            self._closed = True
            for seg in self.segments:
                self.file_cache.forget(seg.log_path)

    def abandon(self) -> None:
        """Drop open descriptors without a clean shutdown (tests simulate crashes with it)."""
        with self._lock:
            self._closed = True
            for seg in self.segments:
                self.file_cache.forget(seg.log_path)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------ compaction

    def compact(self, now_ms: int) -> int:
        """Run the cleaner once (cleanup_policy must include compact); returns bytes freed."""
        from broker.log.compaction import clean_log

        return clean_log(self, now_ms)
