from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from broker.log import (
    FileCache,
    InvalidOffsets,
    InvalidProducerEpoch,
    Log,
    LogConfig,
    OffsetOutOfRange,
    OutOfOrderSequence,
    RecordBatchTooLarge,
)
from broker.log.leader_epoch_cache import UNDEFINED_EPOCH
from client.records import Record, decode_batches, encode_batch, walk_batches

from .helpers import batch, values_from

SMALL = LogConfig(segment_bytes=1024, index_interval_bytes=128, flush="never", retention_ms=-1)


def open_log(tmp: Path, cfg: LogConfig = SMALL, cache: FileCache | None = None) -> Log:
    return Log.open(str(tmp), "t", 0, cfg, cache or FileCache(64))


def read_all(lg: Log, start: int | None = None) -> list[tuple[int, bytes | None]]:
    out: list[tuple[int, bytes | None]] = []
    off = lg.log_start_offset if start is None else start
    while off < lg.log_end_offset:
        buf = lg.read(off, 300)
        if not buf:
            break
        hs = [h for _, h in walk_batches(buf)]
        out += values_from(buf)
        off = hs[-1].next_offset
    return out


def test_append_read_roll_and_reopen(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    expect = []
    for i in range(50):
        r = lg.append(batch(b"v%d" % i, b"w%d" % i), leader_epoch=0, now_ms=i)
        assert (r.base_offset, r.last_offset, r.duplicate) == (2 * i, 2 * i + 1, False)
        expect += [(2 * i, b"v%d" % i), (2 * i + 1, b"w%d" % i)]
    assert len(lg.segments) > 3
    assert lg.log_end_offset == 100
    assert read_all(lg) == expect
    # Reading from the middle of a batch returns that whole batch.
    assert values_from(lg.read(7, 1))[:2] == [(6, b"v3"), (7, b"w3")]
    assert lg.read(100, 1000) == b""
    with pytest.raises(OffsetOutOfRange):
        lg.read(101, 10)
    lg.close()
    lg2 = open_log(tmp_path)
    assert lg2.log_end_offset == 100
    assert read_all(lg2) == expect
    r = lg2.append(batch(b"x"), 0, 100)
    assert r.base_offset == 100
    lg2.close()


def test_read_bounds(tmp_path: Path) -> None:
    lg = open_log(tmp_path, LogConfig(flush="never", index_interval_bytes=64))
    for i in range(10):
        lg.append(batch(b"v" * 50, key=b"%d" % i), 0, 0)
    one = len(batch(b"v" * 50, key=b"0"))
    assert len(list(walk_batches(lg.read(0, 1)))) == 1
    assert len(list(walk_batches(lg.read(0, one * 3 + 5)))) == 3
    assert len(list(walk_batches(lg.read(2, 10**6, max_offset=5)))) == 3
    assert lg.read(5, 10**6, max_offset=5) == b""
    lg.high_watermark = 10**9
    assert lg.high_watermark == 10
    lg.high_watermark = 4
    assert lg.high_watermark == 4


def test_max_batch_size(tmp_path: Path) -> None:
    lg = open_log(tmp_path, LogConfig(max_batch_bytes=100, flush="never"))
    with pytest.raises(RecordBatchTooLarge):
        lg.append(batch(b"x" * 200), 0, 0)


def test_offset_for_timestamp(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    for i in range(40):
        lg.append(batch(b"v", ts=1000 + 10 * i), 0, 0)
    assert lg.offset_for_timestamp(0) == 0
    assert lg.offset_for_timestamp(1000) == 0
    assert lg.offset_for_timestamp(1001) == 1
    assert lg.offset_for_timestamp(1155) == 16
    assert lg.offset_for_timestamp(1390) == 39
    assert lg.offset_for_timestamp(1391) is None
    lg.close()
    assert open_log(tmp_path).offset_for_timestamp(1155) == 16


def test_idempotent_producer(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    a = lg.append(batch(b"a", b"b", pid=7, pepoch=0, seq=0), 0, 0)
    b = lg.append(batch(b"c", pid=7, pepoch=0, seq=2), 0, 0)
    assert (a.base_offset, b.base_offset, b.duplicate) == (0, 2, False)
    dup = lg.append(batch(b"a", b"b", pid=7, pepoch=0, seq=0), 0, 0)
    assert dup == (a.base_offset, a.last_offset, True)
    assert lg.log_end_offset == 3
    with pytest.raises(OutOfOrderSequence):
        lg.append(batch(b"d", pid=7, pepoch=0, seq=5), 0, 0)
    with pytest.raises(OutOfOrderSequence):
        lg.append(batch(b"d", pid=7, pepoch=1, seq=3), 0, 0)
    # Non-idempotent batches are never deduplicated.
    lg.append(batch(b"z"), 0, 0)
    assert lg.append(batch(b"z"), 0, 0).base_offset == 4
    # State survives an unclean restart (replay) ...
    lg.abandon()
    lg2 = open_log(tmp_path)
    assert lg2.append(batch(b"c", pid=7, pepoch=0, seq=2), 0, 0) == (2, 2, True)
    assert lg2.append(batch(b"e", pid=7, pepoch=1, seq=0), 0, 0).base_offset == 5
    with pytest.raises(InvalidProducerEpoch):
        lg2.append(batch(b"f", pid=7, pepoch=0, seq=3), 0, 0)
    lg2.close()
    # ... and a clean one (snapshot).
    lg3 = open_log(tmp_path)
    assert lg3.append(batch(b"e", pid=7, pepoch=1, seq=0), 0, 0) == (5, 5, True)


def test_producer_state_after_roll_and_crash(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    results = [lg.append(batch(b"x" * 100, pid=3, pepoch=0, seq=i), 0, 0) for i in range(30)]
    assert len(lg.segments) > 2
    lg.abandon()
    lg2 = open_log(tmp_path)
    for i in range(25, 30):
        assert lg2.append(batch(b"x" * 100, pid=3, pepoch=0, seq=i), 0, 0) == (
            results[i].base_offset,
            results[i].last_offset,
            True,
        )
    with pytest.raises(OutOfOrderSequence):
        lg2.append(batch(b"x", pid=3, pepoch=0, seq=31), 0, 0)
    assert lg2.append(batch(b"x", pid=3, pepoch=0, seq=30), 0, 0).base_offset == 30


def test_leader_epochs_and_truncation(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    for epoch, n in ((0, 5), (2, 5), (3, 5)):
        for _ in range(n):
            lg.append(batch(b"v" * 40), epoch, 0)
    assert lg.epochs.entries() == [(0, 0), (2, 5), (3, 10)]
    assert lg.end_offset_for_epoch(0) == (0, 5)
    assert lg.end_offset_for_epoch(1) == (0, 5)
    assert lg.end_offset_for_epoch(2) == (2, 10)
    assert lg.end_offset_for_epoch(3) == (3, 15)
    assert lg.end_offset_for_epoch(4) == (UNDEFINED_EPOCH, -1)
    lg.truncate_to(7)
    assert lg.log_end_offset == 7
    assert lg.epochs.entries() == [(0, 0), (2, 5)]
    assert [o for o, _ in read_all(lg)] == list(range(7))
    lg.append(batch(b"n"), 4, 0)
    assert lg.end_offset_for_epoch(2) == (2, 7)
    lg.close()
    lg2 = open_log(tmp_path)
    assert lg2.epochs.entries() == [(0, 0), (2, 5), (4, 7)]
    lg2.truncate_to(0)
    assert lg2.log_end_offset == 0 and lg2.epochs.entries() == []


def test_truncate_mid_batch_drops_whole_batch(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    lg.append(batch(b"a", b"b", b"c"), 0, 0)
    lg.append(batch(b"d", b"e"), 0, 0)
    lg.truncate_to(4)
    assert lg.log_end_offset == 3


def test_follower_append(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "l")
    for i in range(20):
        leader.append(batch(b"v%d" % i), i // 5, 0)
    follower = open_log(tmp_path / "f")
    while follower.log_end_offset < leader.log_end_offset:
        # Reads stop at a segment boundary, so a follower fetches in a loop.
        r = follower.append_as_follower(leader.read(follower.log_end_offset, 10**6), 0)
        assert r is not None
    assert follower.log_end_offset == leader.log_end_offset
    assert read_all(follower) == read_all(leader)
    assert follower.epochs.entries() == leader.epochs.entries()
    with pytest.raises(InvalidOffsets):
        follower.append_as_follower(leader.read(3, 100), 0)
    assert follower.append_as_follower(b"", 0) is None
    # A follower may start at a later offset (leader's log start).
    f2 = open_log(tmp_path / "f2")
    f2.truncate_fully_and_start_at(10)
    while f2.log_end_offset < 20:
        f2.append_as_follower(leader.read(f2.log_end_offset, 10**6), 0)
    assert f2.log_start_offset == 10 and f2.log_end_offset == 20
    assert [o for o, _ in read_all(f2)] == list(range(10, 20))


def test_retention_by_bytes_and_time(tmp_path: Path) -> None:
    cfg = LogConfig(
        segment_bytes=1024,
        index_interval_bytes=128,
        flush="never",
        retention_bytes=2048,
        retention_ms=10_000,
    )
    lg = open_log(tmp_path, cfg)
    for i in range(60):
        lg.append(batch(b"x" * 60, ts=i * 100), 0, 0)
    before = len(lg.segments)
    n = lg.apply_retention(now_ms=0)
    assert n > 0 and len(lg.segments) == before - n
    assert lg.size_bytes() - lg.segments[0].size < 2048
    assert lg.log_start_offset == lg.segments[0].base_offset
    with pytest.raises(OffsetOutOfRange):
        lg.read(0, 100)
    start = lg.log_start_offset
    lg.close()
    lg2 = open_log(tmp_path, cfg)
    assert lg2.log_start_offset == start
    n_before = len(lg2.segments)
    assert lg2.apply_retention(now_ms=10**9) == n_before - 1
    assert len(lg2.segments) == 1


def test_delete_records(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    for _ in range(40):
        lg.append(batch(b"x" * 60), 0, 0)
    with pytest.raises(OffsetOutOfRange):
        lg.delete_records(30)
    lg.high_watermark = 40
    assert lg.delete_records(30) == 30
    assert lg.segments[0].base_offset <= 30
    assert read_all(lg)[0][0] == 30
    lg.abandon()
    assert open_log(tmp_path).log_start_offset == 30


def test_compaction(tmp_path: Path) -> None:
    cfg = LogConfig(
        segment_bytes=600,
        index_interval_bytes=64,
        flush="never",
        cleanup_policy="compact",
        delete_retention_ms=100,
    )
    lg = open_log(tmp_path, cfg)
    model: dict[bytes, tuple[int, bytes | None]] = {}
    off = 0
    for i in range(60):
        keys = [b"k%d" % ((i * 3 + j) % 7) for j in range(3)]
        vals = [None if (i + j) % 11 == 0 else b"v%d" % i for j in range(3)]
        lg.append(batch(*vals, keys=keys, ts=0 if i < 30 else 10**6), 0, 0)
        for k, v in zip(keys, vals, strict=True):
            model[k] = (off, v)
            off += 1

    def keyed() -> list[tuple[int, bytes | None, bytes | None]]:
        out = []
        off = 0
        while off < lg.log_end_offset:
            buf = lg.read(off, 10**6)
            for _, recs in decode_batches(buf):
                out += [(r.offset, r.key, r.value) for r in recs]
            off = out[-1][0] + 1
        return out

    before = keyed()
    active_base = lg.segments[-1].base_offset
    assert lg.compact(now_ms=10**6) == 0  # nothing is committed yet: nothing is cleanable
    assert keyed() == before
    lg.high_watermark = lg.log_end_offset
    freed = lg.compact(now_ms=10**6)
    assert freed > 0
    after = keyed()
    # Offsets are preserved and the active segment is untouched.
    assert set(after) <= set(before)
    assert [x for x in before if x[0] >= active_base] == [x for x in after if x[0] >= active_base]
    newest = {k: o for o, k, _ in before if o < active_base}
    cleaned = [x for x in after if x[0] < active_base]
    # One record per key in the cleaned part: the newest, unless an old tombstone.
    for kk, o in newest.items():
        val = next(vv for oo, _kk, vv in before if oo == o)
        expired_tombstone = val is None and o < 90
        assert [x for x in cleaned if x[1] == kk] == ([] if expired_tombstone else [(o, kk, val)])
    assert model
    lg.close()
    lg = open_log(tmp_path, cfg)
    assert keyed() == after


def test_compaction_never_cleans_against_uncommitted_records(tmp_path: Path) -> None:
    cfg = LogConfig(segment_bytes=300, flush="never", cleanup_policy="compact")
    lg = open_log(tmp_path, cfg)
    lg.append(batch(b"old", key=b"k"), 0, 0)
    lg.roll(0)
    lg.high_watermark = lg.log_end_offset
    lg.append(batch(b"new", key=b"k"), 0, 0)  # not committed: may still be truncated
    lg.roll(0)
    lg.compact(now_ms=0)
    lg.truncate_to(1)
    assert [v for _, v in read_all(lg)] == [b"old"]


def test_interrupted_compaction_swap_recovers(tmp_path: Path) -> None:
    cfg = LogConfig(segment_bytes=400, flush="never", cleanup_policy="compact")
    lg = open_log(tmp_path, cfg)
    for i in range(30):
        lg.append(batch(b"v%d" % i, key=b"k%d" % (i % 3)), 0, 0)
    d = lg.dir
    first = lg.segments[0]
    keep = read_all(lg)
    lg.close()
    # Simulate a crash after .cleaned was renamed to .swap: a complete copy of the segment.
    with open(first.log_path, "rb") as f:
        data = f.read()
    with open(first.log_path + ".swap", "wb") as f:
        f.write(data)
    with open(os.path.join(d, "00000000000000000999.log.cleaned"), "wb") as f:
        f.write(b"junk")
    lg2 = open_log(tmp_path, cfg)
    assert read_all(lg2) == keep
    assert not [n for n in os.listdir(d) if n.endswith((".swap", ".cleaned"))]


def test_unclean_recovery_truncates_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lg = open_log(tmp_path, LogConfig(flush="every"))
    for i in range(10):
        lg.append(batch(b"v%d" % i), 0, 0)
    path = lg.segments[-1].log_path
    lg.abandon()
    with open(path, "ab") as f:
        f.write(batch(b"torn")[:30])
    with caplog.at_level(logging.WARNING):
        lg2 = open_log(tmp_path, LogConfig(flush="every"))
    assert "30 corrupt or torn bytes" in caplog.text
    assert lg2.log_end_offset == 10
    assert lg2.append(batch(b"new"), 0, 0).base_offset == 10
    assert read_all(lg2)[-1] == (10, b"new")


def test_unclean_recovery_drops_corrupt_batch_and_after(tmp_path: Path) -> None:
    lg = open_log(tmp_path, LogConfig(flush="never"))
    sizes = []
    for i in range(10):
        lg.append(batch(b"v%d" % i), 0, 0)
        sizes.append(lg.segments[-1].size)
    path = lg.segments[-1].log_path
    lg.flush()
    lg.abandon()
    with open(path, "r+b") as f:
        f.seek(sizes[5] + 70)
        f.write(b"\xff")
    lg2 = open_log(tmp_path)
    assert lg2.log_end_offset == 6
    assert [o for o, _ in read_all(lg2)] == list(range(6))


def test_many_logs_share_a_small_file_cache(tmp_path: Path) -> None:
    cache = FileCache(4)
    logs = [Log.open(str(tmp_path), "t", p, SMALL, cache) for p in range(20)]
    for p, lg in enumerate(logs):
        for i in range(5):
            lg.append(batch(b"%d-%d" % (p, i)), 0, 0)
    assert cache.open_count() <= 4
    for p, lg in enumerate(logs):
        assert [v for _, v in read_all(lg)] == [b"%d-%d" % (p, i) for i in range(5)]
    assert cache.open_count() <= 4


def test_append_many(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    bs = [batch(b"v%d" % i, b"x" * 50) for i in range(40)]
    rs = lg.append_many(bs, 1, 0)
    assert [r.base_offset for r in rs] == list(range(0, 80, 2))
    assert len(lg.segments) > 2
    assert [v for o, v in read_all(lg) if o % 2 == 0] == [b"v%d" % i for i in range(40)]
    lg.close()
    assert open_log(tmp_path).log_end_offset == 80


def test_append_many_rejection_midway_keeps_the_batches_before_it(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    good = [batch(b"a", pid=7, pepoch=0, seq=0), batch(b"b", pid=7, pepoch=0, seq=1)]
    gap = batch(b"c", pid=7, pepoch=0, seq=5)
    with pytest.raises(OutOfOrderSequence):
        lg.append_many([*good, gap, batch(b"d")], 3, 0)
    assert [v for _, v in read_all(lg)] == [b"a", b"b"]
    assert lg.end_offset_for_epoch(3) == (3, 2)
    lg.append(batch(b"e"), 3, 0)
    lg.close()
    assert [v for _, v in read_all(open_log(tmp_path))] == [b"a", b"b", b"e"]


def test_segment_ms_roll_and_flush_interval(tmp_path: Path) -> None:
    lg = open_log(tmp_path, LogConfig(segment_ms=100, flush="interval", flush_interval_ms=50))
    lg.append(batch(b"a"), 0, now_ms=0)
    lg.append(batch(b"b"), 0, now_ms=60)
    assert lg.recovery_point == 2
    lg.append(batch(b"c"), 0, now_ms=100)
    assert len(lg.segments) == 2
    assert lg.recovery_point == 2
    assert lg.flush() == 3 and lg.recovery_point == 3


def test_compressed_batches_are_stored_verbatim(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    b = encode_batch([Record(5, b"k", b"v" * 100)] * 3, compression=1)
    lg.append(b, 0, 0)
    out = lg.read(0, 10)
    assert out[16:] == b[16:]


def test_unknown_producer_must_start_at_sequence_zero(tmp_path: Path) -> None:
    lg = open_log(tmp_path)
    with pytest.raises(OutOfOrderSequence):
        lg.append(batch(b"late", pid=9, pepoch=0, seq=3), 0, 0)
    assert lg.log_end_offset == 0
    lg.append(batch(b"first", pid=9, pepoch=0, seq=0), 0, 0)
    lg.append(batch(b"next", pid=9, pepoch=0, seq=1), 0, 0)
    assert [v for _, v in read_all(lg)] == [b"first", b"next"]
