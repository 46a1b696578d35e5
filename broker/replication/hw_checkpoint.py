"""High watermarks that survive a restart (Kafka's replication-offset-checkpoint).

A replica's log can hold records past the high watermark (not yet committed),
so a restarted broker must not show consumers everything in its log. The
broker writes every hosted partition's high watermark to
``<data_dir>/replication-offset-checkpoint`` periodically and at shutdown, and
starts each log's high watermark from it (never above the log end). A
partition missing from the file starts at 0 and catches up as soon as its
leader (possibly itself) has heard from the ISR.
"""

from __future__ import annotations

import logging
import os

from broker.log.checkpoint import read_checkpoint, write_checkpoint
from broker.log.errors import CorruptCheckpoint

logger = logging.getLogger(__name__)

FILE_NAME = "replication-offset-checkpoint"
_VERSION = "high-watermarks v1"

TopicPartition = tuple[str, int]


def checkpoint_path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE_NAME)


def read_high_watermarks(data_dir: str) -> dict[TopicPartition, int]:
    """The checkpointed high watermarks; empty if the file is absent or unreadable."""
    path = checkpoint_path(data_dir)
    try:
        lines = read_checkpoint(path)
    except (CorruptCheckpoint, OSError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return {}
    if not lines or lines[0] != _VERSION:
        return {}
    out: dict[TopicPartition, int] = {}
    for line in lines[1:]:
        parts = line.rsplit(" ", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            logger.warning("ignoring malformed line %r of %s", line, path)
            continue
        out[(parts[0], int(parts[1]))] = int(parts[2])
    return out


def write_high_watermarks(data_dir: str, marks: dict[TopicPartition, int]) -> None:
    """Replace the checkpoint with ``marks`` (atomically; call from a worker thread)."""
    lines = [_VERSION] + [f"{t} {p} {hw}" for (t, p), hw in sorted(marks.items())]
    write_checkpoint(checkpoint_path(data_dir), lines)
