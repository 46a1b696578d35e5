"""Partition log storage: segments, indexes, recovery, retention and compaction."""

from broker.log.config import LogConfig
from broker.log.errors import (
    CorruptCheckpoint,
    InvalidOffsets,
    InvalidProducerEpoch,
    LogClosed,
    LogError,
    OffsetOutOfRange,
    OutOfOrderSequence,
    RecordBatchTooLarge,
)
from broker.log.file_cache import DEFAULT_FILE_CACHE, FileCache
from broker.log.partition_log import AppendResult, Log, partition_dir

__all__ = [
    "DEFAULT_FILE_CACHE",
    "AppendResult",
    "CorruptCheckpoint",
    "FileCache",
    "InvalidOffsets",
    "InvalidProducerEpoch",
    "Log",
    "LogClosed",
    "LogConfig",
    "LogError",
    "OffsetOutOfRange",
    "OutOfOrderSequence",
    "RecordBatchTooLarge",
    "partition_dir",
]
