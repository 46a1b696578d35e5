"""Exceptions raised by the partition log."""

from __future__ import annotations


class LogError(Exception):
    """Base class for partition log errors."""


class OffsetOutOfRange(LogError):
    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(f"offset {offset} is outside [{log_start_offset}, {log_end_offset}]")
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class RecordBatchTooLarge(LogError):
    """The batch exceeds max_batch_bytes."""


class InvalidOffsets(LogError):
    """Follower batches whose offsets are not increasing from the log end."""


class OutOfOrderSequence(LogError):
    """An idempotent producer's sequence number skipped ahead or went back."""


class InvalidProducerEpoch(LogError):
    """A batch from a producer epoch older than the one already seen (a zombie)."""


class LogClosed(LogError):
    """The log was closed."""


class CorruptCheckpoint(LogError):
    """A checkpoint file exists but cannot be parsed."""
