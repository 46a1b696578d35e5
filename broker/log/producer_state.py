"""Idempotent-producer state: per producer id, its epoch and its last five batches."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zlib
from collections import deque
from dataclasses import dataclass, field

import msgpack

from broker.log.checkpoint import write_atomic
from broker.log.errors import InvalidProducerEpoch, OutOfOrderSequence
from client.records import BatchHeader, increment_sequence

log = logging.getLogger(__name__)

MAX_BATCHES_PER_PRODUCER = 5
SNAPSHOT_SUFFIX = ".snapshot"
_SNAPSHOT_RE = re.compile(r"^(\d{20})\.snapshot$")


@dataclass(slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=MAX_BATCHES_PER_PRODUCER)
    )
    last_timestamp: int = -1


class ProducerStateManager:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, h: BatchHeader) -> BatchMetadata | None:
        """Validate a leader append; the original batch if ``h`` is a retried duplicate."""
        entry = self.producers.get(h.producer_id)
        if entry is None:
            # As Kafka: a producer this log has no state for starts at sequence 0, so a
            # pipelined later batch cannot overtake a failed first one.
            if h.base_sequence != 0:
                raise OutOfOrderSequence(
                    f"producer {h.producer_id} is unknown here: its first batch must start "
                    f"at sequence 0, got {h.base_sequence}"
                )
            return None
        if h.producer_epoch < entry.epoch:
            raise InvalidProducerEpoch(
                f"producer {h.producer_id}: epoch {h.producer_epoch} < current {entry.epoch}"
            )
        first = h.base_sequence
        if h.producer_epoch > entry.epoch:
            if first != 0:
                raise OutOfOrderSequence(
                    f"producer {h.producer_id}: new epoch {h.producer_epoch} must start at "
                    f"sequence 0, got {first}"
                )
            return None
        last = h.last_sequence
        for b in entry.batches:
            if b.first_seq == first and b.last_seq == last:
                return b
        if entry.batches:
            expected = increment_sequence(entry.batches[-1].last_seq, 1)
            if first != expected:
                raise OutOfOrderSequence(
                    f"producer {h.producer_id}: expected sequence {expected}, got {first}"
                )
        return None

    def update(self, h: BatchHeader, base_offset: int) -> None:
        entry = self.producers.get(h.producer_id)
        if entry is None or h.producer_epoch > entry.epoch:
            entry = ProducerEntry(h.producer_epoch)
            self.producers[h.producer_id] = entry
        elif h.producer_epoch < entry.epoch:
            return
        entry.batches.append(
            BatchMetadata(
                h.base_sequence, h.last_sequence, base_offset, base_offset + h.last_offset_delta
            )
        )
        entry.last_timestamp = max(entry.last_timestamp, h.max_timestamp)

    def replay(self, h: BatchHeader) -> None:
        """Rebuild from a stored batch (recovery, follower append)."""
        if h.producer_id >= 0:
            self.update(h, h.base_offset)

    def clear(self) -> None:
        self.producers.clear()

    # -- snapshots -----------------------------------------------------------------

    def snapshot_path(self, offset: int) -> str:
        return os.path.join(self.dir, f"{offset:020d}{SNAPSHOT_SUFFIX}")

    def snapshot_offsets(self) -> list[int]:
        out = []
        for name in os.listdir(self.dir):
            m = _SNAPSHOT_RE.match(name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def write_snapshot(self, offset: int, *, sync: bool = True) -> None:
        data = [
            [
                pid,
                e.epoch,
                e.last_timestamp,
                [[b.first_seq, b.last_seq, b.base_offset, b.last_offset] for b in e.batches],
            ]
            for pid, e in self.producers.items()
        ]
        body = msgpack.packb([1, offset, data], use_bin_type=True)
        write_atomic(
            self.snapshot_path(offset), zlib.crc32(body).to_bytes(4, "big") + body, sync=sync
        )

    def load_snapshot(self, offset: int) -> bool:
        """Replace the state with the snapshot at ``offset``; False if it is unreadable."""
        try:
            with open(self.snapshot_path(offset), "rb") as f:
                raw = f.read()
            if len(raw) < 4 or int.from_bytes(raw[:4], "big") != zlib.crc32(raw[4:]):
                raise ValueError("crc mismatch")
            version, snap_offset, data = msgpack.unpackb(raw[4:], raw=False)
            if version != 1 or snap_offset != offset:
                raise ValueError("wrong version or offset")
            producers: dict[int, ProducerEntry] = {}
            for pid, epoch, last_ts, batches in data:
                e = ProducerEntry(int(epoch), last_timestamp=int(last_ts))
                for fs, ls, bo, lo in batches:
                    e.batches.append(BatchMetadata(int(fs), int(ls), int(bo), int(lo)))
                producers[int(pid)] = e
        except (OSError, ValueError, TypeError, msgpack.UnpackException) as exc:
            log.warning("ignoring producer snapshot %s: %s", self.snapshot_path(offset), exc)
            return False
        self.producers = producers
        return True

    def delete_snapshots(self, *, above: int | None = None, below: int | None = None) -> None:
        """Delete snapshots with offset > ``above`` and/or < ``below``."""
        for off in self.snapshot_offsets():
            if (above is not None and off > above) or (below is not None and off < below):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.snapshot_path(off))
