"""One partition hosted by this broker: its log, its leadership and its high watermark.

Appends and reads run on the event loop (page-cache writes and reads of bounded
size); fsyncs run in the committer's worker thread. Storage errors become the
protocol's error classes here, so handlers only ever see BrokerError.

Visibility: consumers read below the high watermark. While this broker leads
the partition, the high watermark is decided by its ``LeaderState``
(broker.replication.leader_state): the smallest log end offset over the ISR,
where the leader's own contribution follows the flush policy (the committer
reports it through ``advance_high_watermark``: the fsynced offset under group
commit, the log end at once under interval flushing). A follower takes the
leader's high watermark from each fetch response (capped at its own log end).
Each advance reports how many bytes it made visible, which wakes parked
fetches, and tells the partition's listener, which releases acks=all produces.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Protocol

from broker.log import (
    InvalidProducerEpoch,
    Log,
    LogClosed,
    OffsetOutOfRange,
    OutOfOrderSequence,
    RecordBatchTooLarge,
)
from broker.replication.epochs import leader_end_offset
from broker.replication.leader_state import LeaderState
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
NO_LEADER = -1


class PartitionListener(Protocol):
    """Told about a partition's appends and high-watermark moves (the replica manager)."""

    def appended(self, partition: Partition) -> None: ...

    def high_watermark_moved(self, partition: Partition) -> None: ...


class _Silent:
    def appended(self, partition: Partition) -> None:
        pass

    def high_watermark_moved(self, partition: Partition) -> None:
        pass


class Partition:
    """A hosted replica. ``is_leader``, ``leader``, ``leader_epoch`` and ``isr`` follow
    the partition state; ``leader_state`` exists while this broker leads."""

    __slots__ = (
        "_appended_bytes",
        "_unseen",
        "_visible_bytes",
        "bytes_in",
        "bytes_out",
        "failed",
        "is_leader",
        "isr",
        "key",
        "leader",
        "leader_epoch",
        "leader_state",
        "listener",
        "log",
        "messages_in",
        "partition",
        "replicas",
        "settings",
        "state_version",
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
        self.leader = NO_LEADER
        self.leader_epoch = -1
        self.isr: list[int] = []
        self.replicas: list[int] = []
        # Version of the state znode the fields above come from (-1: none yet).
        self.state_version = -1
        self.leader_state: LeaderState | None = None
        self.listener: PartitionListener = _Silent()
        self.failed = False
        # (end offset, cumulative bytes appended up to it) for appends not yet visible.
        self._unseen: deque[tuple[int, int]] = deque()
        self._appended_bytes = 0
        self._visible_bytes = 0
        # Traffic counters, one addition per batch (read by broker.metrics at scrape time).
        self.messages_in = 0
        self.bytes_in = 0
        self.bytes_out = 0

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
        """The committer's report: the leader's log is durable (group commit) or
        written (interval) up to ``offset``. Returns the bytes that became visible."""
        state = self.leader_state
        if state is None or not state.leader_progress(offset):
            return 0
        return self._set_high_watermark(state.high_watermark)

    def follower_fetched(self, replica: int, fetch_offset: int, now_ms: int) -> int:
        """As leader: ``replica`` fetched from ``fetch_offset`` (its log end). Returns
        the bytes that became visible."""
        state = self.leader_state
        if state is None:
            return 0
        if not state.follower_fetch(replica, fetch_offset, self.log.log_end_offset, now_ms):
            return 0
        return self._set_high_watermark(state.high_watermark)

    def leader_state_moved(self) -> int:
        """The leader state's high watermark may have moved (an ISR change landed)."""
        state = self.leader_state
        if state is None:
            return 0
        return self._set_high_watermark(state.high_watermark)

    def follow_high_watermark(self, leader_high_watermark: int) -> int:
        """As follower: the leader's high watermark, capped at our log end."""
        return self._set_high_watermark(min(leader_high_watermark, self.log.log_end_offset))

    def _set_high_watermark(self, offset: int) -> int:
        log = self.log
        old = log.high_watermark
        if offset <= old:
            return 0
        log.high_watermark = offset
        offset = log.high_watermark
        unseen = self._unseen
        visible = self._visible_bytes
        while unseen and unseen[0][0] <= offset:
            visible = unseen.popleft()[1]
        gained = visible - self._visible_bytes
        self._visible_bytes = visible
        self.listener.high_watermark_moved(self)
        return gained

    def end_offset_for_epoch(self, requested: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch as the leader (see broker.replication.epochs)."""
        log = self.log
        try:
            cached = log.end_offset_for_epoch(requested)
        except LogClosed:
            raise NotLeaderOrFollowerError(
                f"{self.topic}-{self.partition} is no longer hosted here"
            ) from None
        return leader_end_offset(
            requested, self.leader_epoch, cached, log.latest_epoch, log.log_end_offset
        )

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
        self.messages_in += result.last_offset - result.base_offset + 1
        self.bytes_in += len(batch)
        self.note_appended(result.last_offset + 1, len(batch))
        self.listener.appended(self)
        return result.base_offset, False

    def note_appended(self, end_offset: int, nbytes: int) -> None:
        """``nbytes`` of batches ending before ``end_offset`` are now in the log (not yet
        visible)."""
        self._appended_bytes += nbytes
        self._unseen.append((end_offset, self._appended_bytes))

    # ------------------------------------------------------------ read

    def read(self, offset: int, max_bytes: int, *, to_log_end: bool = False) -> bytes:
        """Whole batches from ``offset`` (at least one if there is any) below the high
        watermark — or, for a follower replica, up to the log end."""
        log = self.log
        try:
            if to_log_end:
                return log.read(offset, max_bytes, None)
            data = log.read(offset, max_bytes, log.high_watermark)
            self.bytes_out += len(data)
            return data
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
