"""Log cleaner: keep the newest record per key in the non-active segments.

The expensive part (reading every non-active segment, building the key map,
writing ``.cleaned`` files and fsyncing them) runs without the log's lock, so
appends continue. The swap runs under the lock: each ``.cleaned`` is renamed to
``.swap`` (a complete, durable file), then over the ``.log``. Start-up recovery
deletes ``.cleaned`` leftovers and completes ``.swap`` renames, so a crash at any
point leaves either the old or the new segment, never a mix within a segment.
Offsets are preserved: a batch that loses records is rewritten as one batch per
surviving record, each with its original offset.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from broker.log.checkpoint import fsync_dir
from client.records import (
    LOG_OVERHEAD,
    CorruptRecordError,
    DecodedRecord,
    decode_batch,
    encode_batch_raw,
    increment_sequence,
    parse_header,
)

if TYPE_CHECKING:
    from broker.log.partition_log import Log
    from broker.log.segment import Segment

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


def _iter_batches(fd: int, size: int) -> Iterator[memoryview]:
    pos = 0
    while pos < size:
        head = os.pread(fd, min(_CHUNK, size - pos), pos)
        mv = memoryview(head)
        off = 0
        while off + LOG_OVERHEAD <= len(mv):
            h = parse_header(mv, off) if len(mv) - off >= 61 else None
            if h is None:
                break
            n = h.batch_length + LOG_OVERHEAD
            if h.batch_length < 49 or pos + off + n > size:
                raise CorruptRecordError(f"bad batch length at position {pos + off}")
            if off + n > len(mv):
                if off == 0:
                    # A batch larger than the chunk: read it whole.
                    mv = memoryview(os.pread(fd, n, pos))
                    if len(mv) < n:
                        raise CorruptRecordError("segment shrank while compacting")
                else:
                    break
            yield mv[off : off + n]
            off += n
        if off == 0:
            raise CorruptRecordError(f"unreadable batch at position {pos}")
        pos += off


def _survivor_batch(rec: DecodedRecord, src: bytes | memoryview, index: int) -> bytes:
    h = parse_header(src)
    seq = h.base_sequence
    return encode_batch_raw(
        [[0, rec.key, rec.value, [list(x) for x in rec.headers]]],
        base_timestamp=rec.timestamp,
        max_timestamp=rec.timestamp,
        compression=h.compression,
        producer_id=h.producer_id,
        producer_epoch=h.producer_epoch,
        base_sequence=increment_sequence(seq, index) if seq >= 0 else seq,
        base_offset=rec.offset,
        partition_leader_epoch=h.partition_leader_epoch,
    )


def clean_log(lg: Log, now_ms: int) -> int:
    """Compact the non-active segments of ``lg`` below its high watermark once; return the
    bytes freed."""
    if not lg.config.compact:
        return 0
    cache = lg.file_cache
    with lg._lock:
        lg._check_open()
        # Only segments wholly below the high watermark (Kafka cleans below the last
        # stable offset): records above it may still be truncated away, and cleaning
        # older versions of a key against them would then lose the key altogether.
        hw = lg.high_watermark
        segs = lg.segments
        candidates: list[Segment] = [
            s for s, nxt in itertools.pairwise(segs) if nxt.base_offset <= hw
        ]
        if not candidates:
            return 0
        gen = lg.generation
        sizes = [s.size for s in candidates]
        pins = [(s.log_path, cache.acquire(s.log_path)) for s in candidates]
    cleaned: list[tuple[Segment, str, int]] = []
    try:
        latest: dict[bytes, int] = {}
        for (_, fd), size in zip(pins, sizes, strict=True):
            for mv in _iter_batches(fd, size):
                for rec in decode_batch(mv)[1]:
                    if rec.key is not None:
                        latest[rec.key] = rec.offset
        horizon = now_ms - lg.config.delete_retention_ms
        for seg, (_, fd), size in zip(candidates, pins, sizes, strict=True):
            out_path = seg.log_path + ".cleaned"
            out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            written = 0
            try:
                for mv in _iter_batches(fd, size):
                    _, recs = decode_batch(mv)
                    keep = [
                        r
                        for r in recs
                        if r.key is None
                        or (
                            latest[r.key] == r.offset
                            and not (r.value is None and r.timestamp < horizon)
                        )
                    ]
                    if len(keep) == len(recs):
                        chunks: list[bytes | memoryview] = [mv]
                    else:
                        chunks = [_survivor_batch(r, mv, r.offset - recs[0].offset) for r in keep]
                    for c in chunks:
                        os.write(out, c)
                        written += len(c)
                os.fsync(out)
            finally:
                os.close(out)
            cleaned.append((seg, out_path, written))
    except CorruptRecordError:
        with lg._lock:
            changed = lg.generation != gen
        _discard(cleaned)
        if changed:
            return 0
        raise
    finally:
        for path, fd in pins:
            cache.release(path, fd)

    with lg._lock:
        alive = {id(s) for s in lg.segments[:-1]}
        if lg.generation != gen or lg.closed or any(id(s) not in alive for s, _, _ in cleaned):
            _discard(cleaned)
            return 0
        for seg, path, _ in cleaned:
            os.replace(path, seg.log_path + ".swap")
        fsync_dir(lg.dir)
        freed = 0
        for seg, _, new_size in cleaned:
            cache.forget(seg.log_path)
            os.replace(seg.log_path + ".swap", seg.log_path)
            freed += seg.size - new_size
            seg.size = new_size
            seg.indexes_loaded = False
            seg.next_offset_cache = None
            seg.offset_index.delete()
            seg.time_index.delete()
            seg.recover(check_crc=False)
            seg.save_indexes(sync=True)
        fsync_dir(lg.dir)
        lg.generation += 1
    log.info("%s: compaction freed %d bytes in %d segments", lg.dir, freed, len(cleaned))
    return freed


def _discard(cleaned: list[tuple[Segment, str, int]]) -> None:
    for _, path, _ in cleaned:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
