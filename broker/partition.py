"""One partition hosted by this broker: its log, its leadership and its high watermark.

Appends and reads run on the event loop (page-cache writes and reads of bounded
size); fsyncs run in the committer's worker thread. Storage errors become the
protocol's error classes here, so handlers only ever see BrokerError.

Visibility: consumers read below the high watermark. How it moves depends on
the flush policy (broker.committer): with group commit it follows the offset
that is fsynced; with interval flushing it follows the log end at once. Each
advance reports how many bytes it made visible, which wakes parked fetches.
"""

from __future__ import annotations

import logging
from collections import deque

from broker.log import (
    InvalidProducerEpoch,
    Log,
    LogClosed,
    OffsetOutOfRange,
    OutOfOrderSequence,
    RecordBatchTooLarge,
)
from broker.topic_config import TopicSettings
from client.protocol import (
    CorruptMessageError,
    InvalidProducerEpochError,
    KafkaStorageError,
    MessageTooLargeError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    UnsupportedCompressionTypeError,
)
from client.records import (
    COMPRESSION_LZ4,
    COMPRESSION_MASK,
    COMPRESSION_NONE,
    COMPRESSION_ZLIB,
    COMPRESSION_ZSTD,
    HEADER_SIZE,
    CorruptRecordError,
    parse_header,
    walk_batches,
)

logger = logging.getLogger(__name__)

KNOWN_CODECS = frozenset((COMPRESSION_NONE, COMPRESSION_ZLIB, COMPRESSION_LZ4, COMPRESSION_ZSTD))
_ATTRIBUTES_POS = 21


class Partition:
    """A hosted replica. ``is_leader`` and ``leader_epoch`` follow the partition state."""

    __slots__ = (
        "_appended_bytes",
        "_unseen",
        "_visible_bytes",
        "failed",
        "is_leader",
        "isr",
        "key",
        "leader_epoch",
        "log",
        "partition",
        "settings",
        "topic",
        "topic_id",
    )

    def __init__(
        self, topic: str, partition: int, topic_id: str, log: Log, settings: TopicSettings
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.key = (topic, partition)
        self.topic_id = topic_id
        self.log = log
        self.settings = settings
        self.is_leader = False
        self.leader_epoch = -1
        self.isr: list[int] = []
        self.failed = False
        # (end offset, cumulative bytes appended up to it) for appends not yet visible.
        self._unseen: deque[tuple[int, int]] = deque()
        self._appended_bytes = 0
        self._visible_bytes = 0

    def __repr__(self) -> str:
        return f"<Partition {self.topic}-{self.partition}>"

    # ------------------------------------------------------------ state

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    def check_leader(self) -> None:
        if self.failed:
            raise KafkaStorageError(f"{self.topic}-{self.partition}: the log is offline")
        if not self.is_leader:
            raise NotLeaderOrFollowerError(
                f"broker does not lead {self.topic}-{self.partition}; refresh metadata"
            )

    def advance_high_watermark(self, offset: int) -> int:
        """Move the high watermark up to ``offset``; the bytes that became visible."""
        log = self.log
        old = log.high_watermark
        if offset <= old:
            return 0
        log.high_watermark = offset
        unseen = self._unseen
        visible = self._visible_bytes
        while unseen and unseen[0][0] <= offset:
            visible = unseen.popleft()[1]
        gained = visible - self._visible_bytes
        self._visible_bytes = visible
        return gained

    def reset_visibility(self) -> None:
        """After opening or truncation: nothing is pending visibility."""
        self._unseen.clear()
        self._visible_bytes = self._appended_bytes

    # ------------------------------------------------------------ append

    def append(self, records: bytes, now_ms: int) -> tuple[int, bool]:
        """Append the batches of a produce request as leader.

        Returns (base offset of the first batch, whether everything was a duplicate of
        an earlier idempotent append). Raises BrokerError subclasses.
        """
        n = len(records)
        if n < HEADER_SIZE:
            raise CorruptMessageError(f"records of {n} bytes are shorter than a batch header")
        try:
            first = parse_header(records)
            if first.size == n:
                # The usual case: one batch per partition per request.
                self._check_codec(records, 0)
                return self._append_one(records, now_ms)
            batches = [(pos, h.size) for pos, h in walk_batches(records)]
        except CorruptRecordError as exc:
            raise CorruptMessageError(f"{self.topic}-{self.partition}: {exc}") from None
        view = memoryview(records)
        base = -1
        all_duplicates = True
        for pos, size in batches:
            self._check_codec(records, pos)
            b, dup = self._append_one(view[pos : pos + size], now_ms)
            if base < 0:
                base = b
            all_duplicates = all_duplicates and dup
        return base, all_duplicates

    @staticmethod
    def _check_codec(records: bytes, pos: int) -> None:
        codec = records[pos + _ATTRIBUTES_POS + 1] & COMPRESSION_MASK
        if codec not in KNOWN_CODECS:
            raise UnsupportedCompressionTypeError(f"unknown compression codec {codec}")

    def _append_one(self, batch: bytes | memoryview, now_ms: int) -> tuple[int, bool]:
        try:
            result = self.log.append(batch, self.leader_epoch, now_ms)
        except RecordBatchTooLarge:
            raise MessageTooLargeError(
                f"batch of {len(batch)} bytes exceeds max.message.bytes "
                f"({self.settings.max_message_bytes}) of {self.topic}"
            ) from None
        except CorruptRecordError as exc:
            raise CorruptMessageError(f"{self.topic}-{self.partition}: {exc}") from None
        except OutOfOrderSequence as exc:
            raise OutOfOrderSequenceError(str(exc)) from None
        except InvalidProducerEpoch as exc:
            raise InvalidProducerEpochError(str(exc)) from None
        except LogClosed:
            raise NotLeaderOrFollowerError(
                f"{self.topic}-{self.partition} is no longer hosted here"
            ) from None
        except OSError as exc:
            self.failed = True
            logger.error("%s: append failed, taking the partition offline: %s", self, exc)
            raise KafkaStorageError(f"{self.topic}-{self.partition}: {exc.strerror}") from None
        if result.duplicate:
            return result.base_offset, True
        self._appended_bytes += len(batch)
        self._unseen.append((result.last_offset + 1, self._appended_bytes))
        return result.base_offset, False

    # ------------------------------------------------------------ read

    def read(self, offset: int, max_bytes: int, *, to_log_end: bool = False) -> bytes:
        """Whole batches from ``offset`` (at least one if there is any) below the high
        watermark — or, for a follower replica, up to the log end."""
        log = self.log
        try:
            return log.read(offset, max_bytes, None if to_log_end else log.high_watermark)
        except OffsetOutOfRange as exc:
            raise OffsetOutOfRangeError(str(exc)) from None
        except LogClosed:
            raise NotLeaderOrFollowerError(
                f"{self.topic}-{self.partition} is no longer hosted here"
            ) from None
        except OSError as exc:
            self.failed = True
            logger.error("%s: read failed, taking the partition offline: %s", self, exc)
            raise KafkaStorageError(f"{self.topic}-{self.partition}: {exc.strerror}") from None
