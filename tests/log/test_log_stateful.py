"""Stateful model test: the log against a list of (offset, key, value) records."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.log import FileCache, Log, LogConfig, OffsetOutOfRange
from client.records import Record, decode_batches, encode_batch

CFG = LogConfig(
    segment_bytes=500,
    index_interval_bytes=100,
    flush="never",
    retention_ms=-1,
    retention_bytes=2500,
    cleanup_policy="compact,delete",
    delete_retention_ms=0,
)

Rec = tuple[int, bytes, bytes]


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="logsm-")
        self.cache = FileCache(8)
        self.log = Log.open(self.tmp, "t", 0, CFG, self.cache)
        self.model: list[Rec] = []
        self.leo = 0
        self.start = 0
        self.hw = 0
        self.counter = 0

    def teardown(self) -> None:
        self.log.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def records(self, buf: bytes) -> list[Rec]:
        out = []
        for _, recs in decode_batches(buf):
            for r in recs:
                assert r.key is not None and r.value is not None
                out.append((r.offset, r.key, r.value))
        return out

    @rule(keys=st.lists(st.integers(0, 5), min_size=1, max_size=4), pad=st.integers(0, 150))
    def append(self, keys: list[int], pad: int) -> None:
        recs = []
        for k in keys:
            self.counter += 1
            recs.append(Record(self.counter, b"k%d" % k, b"v%d-" % self.counter + b"x" * pad))
        r = self.log.append(encode_batch(recs), 0, 0)
        assert r.base_offset == self.leo and r.last_offset == self.leo + len(recs) - 1
        for i, rec in enumerate(recs):
            assert rec.key is not None and rec.value is not None
            self.model.append((self.leo + i, rec.key, rec.value))
        self.leo += len(recs)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), max_bytes=st.integers(1, 2000))
    def read(self, data: st.DataObject, max_bytes: int) -> None:
        off = data.draw(st.integers(self.start, self.leo))
        got = self.records(self.log.read(off, max_bytes))
        if off == self.leo:
            assert got == []
            return
        assert got, "at least one batch"
        i = self.model.index(got[0])
        assert self.model[i : i + len(got)] == got
        assert got[-1][0] >= off
        first_at_or_after = next(r for r in self.model if r[0] >= off)
        assert got[0][0] <= first_at_or_after[0]

    @rule(off=st.integers(-5, 0))
    def read_out_of_range(self, off: int) -> None:
        for o in (self.start - 1 + off, self.leo + 1 - off):
            if o < self.start or o > self.leo:
                try:
                    self.log.read(o, 100)
                except OffsetOutOfRange:
                    continue
                raise AssertionError(f"read({o}) did not raise")

    @rule()
    def roll(self) -> None:
        self.log.roll(0)

    @rule()
    def retention(self) -> None:
        self.log.apply_retention(now_ms=0)
        assert self.log.log_start_offset >= self.start
        self.start = self.log.log_start_offset
        self.model = [r for r in self.model if r[0] >= self.start]
        self.hw = max(self.hw, self.start)

    @rule()
    def commit(self) -> None:
        # As replication does: the high watermark moves up to a batch boundary.
        self.log.high_watermark = self.leo
        self.hw = self.log.high_watermark

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        # Replicas truncate only what is not committed (above the high watermark).
        off = data.draw(st.integers(max(self.start, self.hw), self.leo))
        self.log.truncate_to(off)
        # Whole batches go: the log may end before ``off``; the model follows the log.
        assert self.log.log_end_offset <= max(off, self.start)
        self.leo = self.log.log_end_offset
        self.model = [r for r in self.model if r[0] < self.leo]

    @rule()
    def compact(self) -> None:
        # Cleanable: the non-active segments that lie wholly below the high watermark.
        bases = [s.base_offset for s in self.log.segments[1:]]
        end = max([b for b in bases if b <= self.log.high_watermark], default=0)
        self.log.compact(now_ms=0)
        newest: dict[bytes, int] = {}
        for o, k, _ in self.model:
            if o < end:
                newest[k] = o
        self.model = [r for r in self.model if r[0] >= end or newest[r[1]] == r[0]]

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.log.close()
        else:
            self.log.abandon()
        self.log = Log.open(self.tmp, "t", 0, CFG, self.cache)
        # The broker restores the high watermark from its checkpoint.
        self.log.high_watermark = self.hw

    @invariant()
    def matches_model(self) -> None:
        assert self.log.log_end_offset == self.leo
        assert self.log.log_start_offset == self.start
        got: list[Rec] = []
        off = self.start
        while off < self.leo:
            buf = self.log.read(off, 10**6)
            if not buf:
                break
            recs = self.records(buf)
            got += recs
            off = recs[-1][0] + 1
        assert got == self.model
        assert self.cache.open_count() <= 8


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
