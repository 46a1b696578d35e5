"""The consumer's fetch state (sans-IO) and its fast batch decoder.

``FetchState`` tracks, per assigned partition, two offsets:

- ``position``: the next offset ``poll`` hands to the user;
- ``fetch_offset``: the next offset to ask the broker for. It runs ahead of
  ``position`` by the data already fetched and buffered, which is what lets a
  fetch be in flight while the user processes the previous one (prefetch).

Each partition has at most one fetch in flight and at most
``max_buffered_fetches`` answers buffered. A ``seek`` moves both offsets, drops
buffered data and bumps the partition's ``generation`` so that a late answer
to a fetch sent before the seek is recognised and ignored. Partitions without
a position wait for an offset *reset* (earliest or latest, from
``auto_offset_reset`` or ``seek_to_beginning``/``seek_to_end``), answered by a
LIST_OFFSETS request.

``decode_records`` turns one batch into ``ConsumerRecord`` tuples with one
``msgpack.unpackb`` call and C-level iterators (no Python code per record), so
decoding costs a few hundred nanoseconds per record.

This module reads no clock: every time-dependent call takes ``now``.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any

import msgpack

from client.errors import NoOffsetForPartitionError
from client.protocol import (
    ERRORS,
    FencedLeaderEpochError,
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)
from client.records import (
    ATTRIBUTES_POS,
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    CorruptRecordError,
    CrcMismatch,
    InvalidRecords,
    batch_crc,
    decompress_body,
    validate_batch_at,
)
from client.serializers import Deserializer
from client.types import ConsumerRecord, TopicPartition
from client.wire import ServerError

EARLIEST = "earliest"
LATEST = "latest"

_tuple_new = tuple.__new__
_METADATA_ERRORS: tuple[type[ServerError], ...] = (
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
    LeaderNotAvailableError,
    FencedLeaderEpochError,
    UnknownLeaderEpochError,
)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many small acyclic tuples (records):
    otherwise every few hundred allocations trigger a collection that rescans
    the records built so far."""
    if gc.isenabled():
        gc.disable()
        try:
            yield
        finally:
            gc.enable()
    else:
        yield


def decode_records(
    topic: str,
    partition: int,
    header: BatchHeader,
    body: bytes | memoryview,
    skip: int,
    key_deserializer: Deserializer | None,
    value_deserializer: Deserializer | None,
) -> list[ConsumerRecord]:
    """The records of one (already CRC-checked) batch, minus the first ``skip``.

    Raises ``InvalidRecords`` when the body does not hold ``record_count``
    records of ``[timestamp_delta, key, value, headers]``."""
    raw = decompress_body(header.compression, body)
    limit = len(raw)
    try:
        items = msgpack.unpackb(
            raw,
            use_list=False,
            raw=False,
            max_bin_len=limit,
            max_str_len=limit,
            max_array_len=limit,
            max_map_len=limit // 2,
            max_ext_len=limit,
        )
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as exc:
        raise InvalidRecords(f"body is not a msgpack record array: {exc}") from exc
    if type(items) is not tuple or len(items) != header.record_count:
        raise InvalidRecords(
            f"header announces {header.record_count} records, body holds "
            f"{len(items) if isinstance(items, tuple) else 'no array'}"
        )
    if skip:
        items = items[skip:]
        if not items:
            return []
    try:
        if set(map(len, items)) != {4}:
            raise InvalidRecords("a record is not [timestamp_delta, key, value, headers]")
        deltas, keys, values, headers = zip(*items, strict=True)
        timestamps = list(map(add, deltas, repeat(header.base_timestamp)))
    except TypeError as exc:
        raise InvalidRecords(f"malformed record in batch: {exc}") from exc
    keys_it: Any = keys if key_deserializer is None else map(key_deserializer, keys)
    values_it: Any = values if value_deserializer is None else map(value_deserializer, values)
    first = header.base_offset + skip
    return list(
        map(
            _tuple_new,
            repeat(ConsumerRecord),
            zip(
                repeat(topic),
                repeat(partition),
                range(first, first + len(items)),
                timestamps,
                keys_it,
                values_it,
                headers,
            ),
        )
    )


class CompletedFetch:
    """One partition's answer to one fetch: raw batches, decoded lazily.

    ``data`` holds only complete batches (a trailing partial batch, cut by the
    broker's byte limit, is dropped); ``end_offset`` is the offset after them."""

    __slots__ = ("data", "end_offset", "generation", "pending", "pending_next", "pos", "tp")

    def __init__(
        self, tp: TopicPartition, data: memoryview, generation: int, end_offset: int
    ) -> None:
        self.tp = tp
        self.data = data
        self.pos = 0
        self.generation = generation
        self.end_offset = end_offset
        self.pending: list[ConsumerRecord] = []
        self.pending_next = 0

    @property
    def exhausted(self) -> bool:
        """Whether every record of this answer was handed out."""
        return not self.pending and self.pos >= len(self.data)

    def take(
        self,
        n: int,
        position: int,
        check_crcs: bool,
        key_deserializer: Deserializer | None,
        value_deserializer: Deserializer | None,
    ) -> tuple[list[ConsumerRecord], int]:
        """Up to ``n`` records at or after ``position``; and the new position.

        A batch that fails its CRC or does not decode raises (a CorruptRecordError)
        on every call until the partition is sought past it, as in Kafka."""
        out: list[ConsumerRecord] = []
        data = self.data
        while len(out) < n:
            pending = self.pending
            if pending:
                need = n - len(out)
                if need >= len(pending):
                    out.extend(pending)
                    self.pending = []
                    position = max(pending[-1].offset + 1, self.pending_next)
                else:
                    out.extend(pending[:need])
                    del pending[:need]
                    position = pending[0].offset
                continue
            pos = self.pos
            if pos >= len(data):
                break
            try:
                h = validate_batch_at(data, pos, check_crc=False)
                end = pos + LOG_OVERHEAD + h.batch_length
                if h.next_offset <= position:
                    self.pos = end
                    continue
                if check_crcs and batch_crc(data[pos + ATTRIBUTES_POS : end]) != h.crc:
                    raise CrcMismatch(
                        f"{self.tp.topic}-{self.tp.partition}: the batch at offset "
                        f"{h.base_offset} failed its CRC check"
                    )
                skip = min(max(0, position - h.base_offset), h.record_count)
                records = decode_records(
                    self.tp.topic,
                    self.tp.partition,
                    h,
                    data[pos + HEADER_SIZE : end],
                    skip,
                    key_deserializer,
                    value_deserializer,
                )
            except CorruptRecordError:
                if out:
                    break  # hand out the good records first; raise on the next call
                raise
            self.pos = end
            self.pending_next = h.next_offset
            if records:
                self.pending = records
            else:
                position = max(position, h.next_offset)
        return out, position


@dataclass(slots=True)
class PartitionState:
    """Fetch bookkeeping of one assigned partition."""

    position: int | None = None
    fetch_offset: int | None = None
    reset: str | None = None
    paused: bool = False
    in_flight: bool = False
    generation: int = 0
    retry_at: float = 0.0
    high_watermark: int = -1
    log_start_offset: int = -1
    buffered: deque[CompletedFetch] = field(default_factory=deque)


class FetchState:
    """Assignment, positions, in-flight fetches and buffered answers."""

    def __init__(
        self,
        *,
        auto_offset_reset: str,
        max_buffered_fetches: int = 2,
        retry_backoff: float = 0.1,
    ) -> None:
        self.auto_offset_reset = auto_offset_reset
        self.max_buffered_fetches = max_buffered_fetches
        self.retry_backoff = retry_backoff
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.ready: list[CompletedFetch] = []
        self.errors: list[BaseException] = []

    # -- assignment and positions -----------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        """The assignment becomes ``partitions``: kept ones keep their position,
        new ones wait for a reset, dropped ones lose their buffered data."""
        new: dict[TopicPartition, PartitionState] = {}
        for tp in partitions:
            state = self.partitions.get(tp)
            new[tp] = state if state is not None else PartitionState()
        self.partitions = new
        self.ready = [cf for cf in self.ready if cf.tp in new]

    def state(self, tp: TopicPartition) -> PartitionState:
        """The state of an assigned partition; IllegalStateError if it is not assigned."""
        try:
            return self.partitions[tp]
        except KeyError:
            from client.errors import IllegalStateError

            raise IllegalStateError(f"{tp.topic}-{tp.partition} is not assigned") from None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Next ``poll`` returns records from ``offset``."""
        st = self.state(tp)
        self._drop_data(tp, st)
        st.position = st.fetch_offset = offset
        st.reset = None

    def request_reset(self, tp: TopicPartition, strategy: str) -> None:
        """Move to the earliest/latest offset, looked up before the next fetch."""
        st = self.state(tp)
        self._drop_data(tp, st)
        st.position = st.fetch_offset = None
        st.reset = strategy

    def _drop_data(self, tp: TopicPartition, st: PartitionState) -> None:
        st.generation += 1
        st.in_flight = False
        st.retry_at = 0.0
        if st.buffered:
            st.buffered.clear()
            self.ready = [cf for cf in self.ready if cf.tp != tp]

    def needs_reset(self) -> dict[TopicPartition, str]:
        """Partitions without a position and the reset each needs.

        With ``auto_offset_reset="none"`` a partition that has neither raises
        NoOffsetForPartitionError."""
        out: dict[TopicPartition, str] = {}
        for tp, st in self.partitions.items():
            if st.position is None:
                strategy = st.reset or self.auto_offset_reset
                if strategy == "none":
                    raise NoOffsetForPartitionError(
                        f"{tp.topic}-{tp.partition} has no position and auto_offset_reset='none'"
                    )
                out[tp] = strategy
        return out

    def apply_reset(self, tp: TopicPartition, strategy: str, offset: int) -> None:
        """The answer to a reset lookup (ignored if the partition moved meanwhile)."""
        st = self.partitions.get(tp)
        if st is None or st.position is not None:
            return
        if (st.reset or self.auto_offset_reset) != strategy:
            return
        st.position = st.fetch_offset = offset
        st.reset = None

    # -- fetching ---------------------------------------------------------------------------

    def fetchable(self, now: float) -> list[TopicPartition]:
        """Partitions a fetch may be sent for now."""
        limit = self.max_buffered_fetches
        return [
            tp
            for tp, st in self.partitions.items()
            if st.fetch_offset is not None
            and not st.paused
            and not st.in_flight
            and len(st.buffered) < limit
            and st.retry_at <= now
        ]

    def next_retry(self, now: float) -> float:
        """The earliest future time a backed-off partition becomes fetchable."""
        times = [st.retry_at for st in self.partitions.values() if st.retry_at > now]
        return min(times, default=float("inf"))

    def fetch_started(self, tp: TopicPartition) -> tuple[int, int]:
        """Mark a fetch in flight; its (fetch offset, generation)."""
        st = self.partitions[tp]
        if st.fetch_offset is None:
            raise ValueError(f"{tp} has no fetch offset")
        st.in_flight = True
        return st.fetch_offset, st.generation

    def fetch_failed(self, tp: TopicPartition, generation: int, now: float) -> None:
        """The fetch carrying ``tp`` failed as a whole (connection lost, timeout)."""
        st = self.partitions.get(tp)
        if st is not None and st.generation == generation:
            st.in_flight = False
            st.retry_at = now + self.retry_backoff

    def on_response(
        self, tp: TopicPartition, generation: int, answer: dict[str, Any], now: float
    ) -> bool:
        """Apply one partition's fetch answer; True if the leader may have moved
        (refresh metadata)."""
        st = self.partitions.get(tp)
        if st is None or st.generation != generation:
            return False  # unassigned or sought meanwhile: a stale answer
        st.in_flight = False
        code = int(answer.get("error_code", 0))
        if code:
            error = ERRORS.exception(code, answer.get("error_message") or "")
            if isinstance(error, OffsetOutOfRangeError):
                if self.auto_offset_reset == "none":
                    self.errors.append(error)
                    st.retry_at = now + self.retry_backoff
                else:
                    self._drop_data(tp, st)
                    st.position = st.fetch_offset = None
                    st.reset = self.auto_offset_reset
                return False
            st.retry_at = now + self.retry_backoff
            if isinstance(error, _METADATA_ERRORS) or error.retriable:
                return isinstance(error, _METADATA_ERRORS)
            self.errors.append(error)
            return False
        st.retry_at = 0.0
        st.high_watermark = int(answer.get("high_watermark", -1))
        st.log_start_offset = int(answer.get("log_start_offset", -1))
        data = answer.get("records") or b""
        if not data:
            return False
        complete, end = complete_batches(data)
        if end is None or st.fetch_offset is None or end <= st.fetch_offset:
            return False
        cf = CompletedFetch(tp, complete, st.generation, end)
        st.fetch_offset = end
        st.buffered.append(cf)
        self.ready.append(cf)
        return False

    # -- handing records out ----------------------------------------------------------------

    def take(
        self,
        max_records: int,
        check_crcs: bool,
        key_deserializer: Deserializer | None,
        value_deserializer: Deserializer | None,
    ) -> list[ConsumerRecord]:
        """Up to ``max_records`` buffered records, oldest answer first; advances
        positions. Raises the first pending fetch error instead, if any."""
        if self.errors:
            error = self.errors.pop(0)
            raise error
        out: list[ConsumerRecord] = []
        ready = self.ready
        i = 0
        with gc_paused():
            while i < len(ready) and len(out) < max_records:
                cf = ready[i]
                st = self.partitions.get(cf.tp)
                if st is None or st.generation != cf.generation or st.position is None:
                    del ready[i]
                    continue
                if st.paused:
                    i += 1
                    continue
                try:
                    records, st.position = cf.take(
                        max_records - len(out),
                        st.position,
                        check_crcs,
                        key_deserializer,
                        value_deserializer,
                    )
                except CorruptRecordError:
                    if out:
                        break
                    raise
                out.extend(records)
                if not cf.exhausted:
                    break
                del ready[i]
                if st.buffered and st.buffered[0] is cf:
                    st.buffered.popleft()
                if st.position < cf.end_offset:
                    st.position = cf.end_offset
        return out

    def has_records(self) -> bool:
        """Whether ``take`` would return something (records or an error)."""
        return bool(self.errors) or any(
            not self.partitions[cf.tp].paused for cf in self.ready if cf.tp in self.partitions
        )


def complete_batches(data: bytes | memoryview) -> tuple[memoryview, int | None]:
    """The complete batches at the start of ``data`` and the offset after them
    (None if there is none). A fetch answer may end with a partial batch (the
    broker cut at its byte limit); it is left out, as Kafka's consumer does."""
    mv = memoryview(data)
    pos = 0
    end: int | None = None
    n = len(mv)
    while n - pos >= HEADER_SIZE:
        try:
            h = validate_batch_at(mv, pos, check_crc=False)
        except ValueError:
            break
        end = h.next_offset
        pos += LOG_OVERHEAD + h.batch_length
    return mv[:pos], end
