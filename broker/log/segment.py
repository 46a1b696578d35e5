"""One segment: a ``.log`` file of concatenated batches plus its sparse indexes."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator

from broker.log.file_cache import FileCache
from broker.log.offset_index import OffsetIndex
from broker.log.time_index import TimeIndex
from client.records import (
    ATTRIBUTES_POS,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MIN_BATCH_LENGTH,
    BatchHeader,
    batch_crc,
)

# base_offset, batch_length, epoch, magic, crc, attributes, last_offset_delta
_SCAN = struct.Struct(">qiibIhi")
_SCAN_SIZE = _SCAN.size
SCAN_CHUNK = 8 * 1024 * 1024


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class Segment:
    """Sizes and offsets of one segment; descriptors come from the shared FileCache."""

    __slots__ = (
        "base_offset",
        "bytes_since_index",
        "cache",
        "created_ms",
        "dir",
        "index_path",
        "indexes_loaded",
        "interval",
        "log_path",
        "max_timestamp",
        "max_timestamp_rel",
        "next_offset_cache",
        "offset_index",
        "size",
        "time_index",
        "timeindex_path",
    )

    def __init__(
        self, directory: str, base_offset: int, cache: FileCache, size: int, interval: int
    ) -> None:
        self.dir = directory
        self.interval = interval
        self.base_offset = base_offset
        self.cache = cache
        name = os.path.join(directory, segment_name(base_offset))
        self.log_path = name + ".log"
        self.index_path = name + ".index"
        self.timeindex_path = name + ".timeindex"
        self.size = size
        self.offset_index = OffsetIndex(self.index_path)
        self.time_index = TimeIndex(self.timeindex_path)
        self.indexes_loaded = False
        self.bytes_since_index = 0
        self.max_timestamp = -1
        self.max_timestamp_rel = 0
        self.next_offset_cache: int | None = None
        self.created_ms: int | None = None

    @classmethod
    def create(cls, directory: str, base_offset: int, cache: FileCache, interval: int) -> Segment:
        path = os.path.join(directory, segment_name(base_offset) + ".log")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.close(fd)
        seg = cls(directory, base_offset, cache, 0, interval)
        seg.indexes_loaded = True
        seg.next_offset_cache = base_offset
        seg.offset_index.delete()
        seg.time_index.delete()
        return seg

    # -- raw I/O ---------------------------------------------------------------

    def pread(self, n: int, pos: int) -> bytes:
        fd = self.cache.acquire(self.log_path)
        try:
            return os.pread(fd, n, pos)
        finally:
            self.cache.release(self.log_path, fd)

    def write(self, bufs: list[bytes | memoryview], pos: int, total: int) -> None:
        fd = self.cache.acquire(self.log_path)
        try:
            written = os.pwritev(fd, bufs, pos)
            if written != total:
                # Rare short write: finish with one contiguous buffer.
                rest = b"".join(bytes(b) for b in bufs)[written:]
                while rest:
                    n = os.pwrite(fd, rest, pos + written)
                    written += n
                    rest = rest[n:]
        except OSError:
            # Leave no partial batch behind (e.g. ENOSPC).
            os.ftruncate(fd, pos)
            raise
        finally:
            self.cache.release(self.log_path, fd)

    def sync(self) -> None:
        fd = self.cache.acquire(self.log_path)
        try:
            os.fdatasync(fd)
        finally:
            self.cache.release(self.log_path, fd)

    def truncate_file(self, size: int) -> None:
        fd = self.cache.acquire(self.log_path)
        try:
            os.ftruncate(fd, size)
        finally:
            self.cache.release(self.log_path, fd)

    # -- scanning ----------------------------------------------------------------

    def scan(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        check_crc: bool = False,
        min_offset: int | None = None,
        chunk: int = SCAN_CHUNK,
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (position, header) from ``start``; stop silently at the first invalid batch."""
        for pos, h, _ in self._scan(start, end, check_crc, min_offset, chunk):
            yield pos, h

    def _scan(
        self,
        start: int,
        end: int | None,
        check_crc: bool,
        min_offset: int | None,
        chunk: int = SCAN_CHUNK,
    ) -> Iterator[tuple[int, BatchHeader, int]]:
        limit = self.size if end is None else end
        fd = self.cache.acquire(self.log_path)
        try:
            pos = start
            expect = self.base_offset if min_offset is None else min_offset
            buf = b""
            buf_start = pos
            unpack = HEADER_STRUCT.unpack_from
            crc32 = batch_crc
            while pos < limit:
                off = pos - buf_start
                if len(buf) - off < HEADER_SIZE:
                    buf = os.pread(fd, min(chunk, limit - pos), pos)
                    buf_start, off = pos, 0
                    if len(buf) < HEADER_SIZE:
                        return
                fields = unpack(buf, off)
                blen = fields[1]
                size = blen + LOG_OVERHEAD
                if (
                    blen < MIN_BATCH_LENGTH
                    or pos + size > limit
                    or fields[3] != MAGIC
                    or fields[0] < expect
                    or fields[12] < 1
                    or fields[6] < fields[12] - 1
                ):
                    return
                if len(buf) - off < size:
                    buf = os.pread(fd, max(size, min(chunk, limit - pos)), pos)
                    buf_start, off = pos, 0
                    if len(buf) < size:
                        return
                if (
                    check_crc
                    and crc32(memoryview(buf)[off + ATTRIBUTES_POS : off + size]) != fields[4]
                ):
                    return
                h = BatchHeader._make(fields)
                yield pos, h, size
                expect = fields[0] + fields[6] + 1
                pos += size
        finally:
            self.cache.release(self.log_path, fd)

    def recover(
        self, *, check_crc: bool, on_batch: Callable[[BatchHeader], None] | None = None
    ) -> int:
        """Rebuild indexes and next offset by scanning; return the valid byte length."""
        self.offset_index.clear()
        self.time_index.clear()
        self.bytes_since_index = 0
        self.max_timestamp = -1
        self.max_timestamp_rel = 0
        valid = 0
        nxt = self.base_offset
        interval = self.interval
        for pos, h, size in self._scan(0, None, check_crc, None):
            self._index_batch(pos, h.base_offset, h.max_timestamp, size, interval)
            valid = pos + size
            nxt = h.base_offset + h.last_offset_delta + 1
            if on_batch is not None:
                on_batch(h)
        self.next_offset_cache = nxt
        self.indexes_loaded = True
        return valid

    def _index_batch(
        self, pos: int, base_offset: int, max_ts: int, size: int, interval: int
    ) -> None:
        rel = base_offset - self.base_offset
        if self.bytes_since_index >= interval or pos == 0:
            self.offset_index.append(rel, pos)
            if pos and self.max_timestamp >= 0:
                self.time_index.maybe_append(self.max_timestamp, self.max_timestamp_rel)
            self.bytes_since_index = 0
        self.bytes_since_index += size
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.max_timestamp_rel = rel

    # -- indexes -----------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Load indexes from disk, rebuilding them by a header scan if missing or bad."""
        if self.indexes_loaded:
            return
        if self.offset_index.load(self.size) and self.time_index.load():
            self.max_timestamp = self.time_index.max_timestamp
            self.max_timestamp_rel = (
                self.time_index.relative_offsets[-1] if len(self.time_index) else 0
            )
            self.indexes_loaded = True
            return
        self.recover(check_crc=False)

    def save_indexes(self, *, sync: bool) -> None:
        if not self.indexes_loaded:
            return
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.max_timestamp_rel)
        self.offset_index.save(sync=sync)
        self.time_index.save(sync=sync)

    def next_offset(self) -> int:
        """Offset after the last batch of this segment (its base offset if empty)."""
        if self.next_offset_cache is not None:
            return self.next_offset_cache
        self.ensure_indexes()
        if self.next_offset_cache is not None:
            return self.next_offset_cache
        start = self.offset_index.positions[-1] if len(self.offset_index) else 0
        nxt = self.base_offset
        for _, h in self.scan(start):
            nxt = h.next_offset
        self.next_offset_cache = nxt
        return nxt

    def find(self, offset: int) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset >= ``offset``."""
        self.ensure_indexes()
        start = self.offset_index.lookup(max(0, offset - self.base_offset))
        for pos, h in self.scan(start, chunk=self.interval * 2 + 4096):
            if h.base_offset + h.last_offset_delta >= offset:
                return pos, h
        return None

    def find_by_timestamp(self, timestamp: int) -> int | None:
        """Base offset of the first batch with max_timestamp >= ``timestamp``."""
        self.ensure_indexes()
        if self.max_timestamp < timestamp:
            return None
        rel = self.time_index.lookup(timestamp)
        start = self.offset_index.lookup(rel)
        for _, h in self.scan(start, chunk=self.interval * 2 + 4096):
            if h.max_timestamp >= timestamp:
                return h.base_offset
        return None

    def truncate_to(self, position: int) -> None:
        """Cut the segment at ``position`` (a batch boundary)."""
        self.truncate_file(position)
        self.size = position
        self.indexes_loaded = False
        self.next_offset_cache = None
        self.offset_index.clear()
        self.time_index.clear()
        self.offset_index.delete()
        self.time_index.delete()
        self.recover(check_crc=False)
        if position == 0:
            self.next_offset_cache = self.base_offset
        self.created_ms = None

    def delete_files(self) -> None:
        self.cache.forget(self.log_path)
        for p in (self.log_path, self.index_path, self.timeindex_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
