"""Tests for coordinator.txnlog: unit tests, hypothesis models, torn tails, corruption, kill -9."""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.txnlog import (
    MAX_ZXID,
    TxnLog,
    TxnLogCorruption,
    TxnLogError,
    log_file_name,
)
from tests.coordinator.txnlog_crash_child import payload_for

FILE_HEADER = 8  # ">4sHH"
RECORD_HEADER = 16  # ">IIq"


def rec(zxid: int) -> bytes:
    return f"record-{zxid}-".encode() * (zxid % 5 + 1)


def all_records(log: TxnLog) -> list[tuple[int, bytes]]:
    return list(log.read_from(0))


def fill(log: TxnLog, zxids: Iterator[int] | range | list[int]) -> list[tuple[int, bytes]]:
    out = []
    for z in zxids:
        log.append(z, rec(z))
        out.append((z, rec(z)))
    return out


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "txnlog"


# ---------------------------------------------------------------------------- unit tests


def test_open_creates_empty_log(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        assert log.last_zxid == 0
        assert log.durable_zxid == 0
        assert all_records(log) == []
        assert log.files() == []
        assert log.sync() == 0
    assert log_dir.is_dir()
    assert list(log_dir.iterdir()) == []  # files are created lazily


def test_append_sync_read(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        expected = fill(log, range(1, 6))
        assert log.last_zxid == 5
        assert log.durable_zxid == 0
        assert log.sync() == 5
        assert log.durable_zxid == 5
        assert all_records(log) == expected
        assert list(log.read_from(3)) == expected[3:]
        assert list(log.read_from(5)) == []
        assert list(log.read_from(100)) == []
        assert [p.name for p in log.files()] == [log_file_name(1)]
        assert log_file_name(1) == "log.0000000000000001"


def test_zxids_need_not_be_consecutive(log_dir: Path) -> None:
    zxids = [3, 10, 2**32 + 1, 2**32 + 7, MAX_ZXID]
    with TxnLog.open(log_dir) as log:
        expected = fill(log, zxids)
        assert list(log.read_from(4)) == expected[1:]
        assert list(log.read_from(2**32 + 1)) == expected[3:]
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == expected


def test_empty_record(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        log.append(1, b"")
        log.append(2, b"x")
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == [(1, b""), (2, b"x")]


@pytest.mark.parametrize("bad", [0, -1, 5, 4, MAX_ZXID + 1])
def test_append_rejects_bad_zxid(log_dir: Path, bad: int) -> None:
    with TxnLog.open(log_dir) as log:
        fill(log, range(1, 6))
        with pytest.raises(ValueError):
            log.append(bad, b"x")
        assert log.last_zxid == 5
        log.append(6, b"ok")
        assert log.last_zxid == 6


def test_reopen_after_close(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        expected = fill(log, range(1, 11))
    with TxnLog.open(log_dir) as log:
        assert log.last_zxid == 10
        assert log.durable_zxid == 10
        assert all_records(log) == expected
        expected += fill(log, range(11, 21))
        assert len(log.files()) == 1  # appends continue in the same file
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == expected
        with pytest.raises(ValueError):
            log.append(20, b"dup")


def test_close_is_idempotent_and_closed_log_refuses_work(log_dir: Path) -> None:
    log = TxnLog.open(log_dir)
    log.append(1, b"a")
    log.close()
    log.close()
    assert log.closed
    with pytest.raises(ValueError):
        log.append(2, b"b")
    with pytest.raises(ValueError):
        log.sync()
    with pytest.raises(ValueError):
        log.roll()
    with pytest.raises(ValueError):
        log.read_from(0)
    with pytest.raises(ValueError):
        log.purge_before(1)


def test_directory_is_locked_while_open(log_dir: Path) -> None:
    with TxnLog.open(log_dir), pytest.raises(TxnLogError, match="in use"):
        TxnLog.open(log_dir)
    TxnLog.open(log_dir).close()  # released on close


def test_file_bytes_must_be_sane(log_dir: Path) -> None:
    with pytest.raises(ValueError):
        TxnLog.open(log_dir, file_bytes=10)


def test_roll_and_read_across_files(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        log.roll()  # no-op on an empty log
        expected = fill(log, range(1, 4))
        log.roll()
        log.roll()  # a second roll before any append is a no-op
        expected += fill(log, range(4, 7))
        log.roll()
        expected += fill(log, [9])
        assert [p.name for p in log.files()] == [log_file_name(z) for z in (1, 4, 9)]
        for z in range(0, 10):
            assert list(log.read_from(z)) == [r for r in expected if r[0] > z]
        log.sync()
    with TxnLog.open(log_dir) as log:
        assert [p.name for p in log.files()] == [log_file_name(z) for z in (1, 4, 9)]
        for z in range(0, 10):
            assert list(log.read_from(z)) == [r for r in expected if r[0] > z]


def test_rolls_automatically_by_size(log_dir: Path) -> None:
    with TxnLog.open(log_dir, file_bytes=1024) as log:
        for z in range(1, 51):
            log.append(z, bytes([z]) * 100)
        log.append(51, b"B" * 3000)  # larger than a file: gets a file of its own
        log.append(52, b"after")
        files = log.files()
        sizes = {p.name: p.stat().st_size for p in files}
        assert len(files) > 5
        assert all(s <= 1024 for n, s in sizes.items() if n != log_file_name(51))
        assert sizes[log_file_name(51)] == FILE_HEADER + RECORD_HEADER + 3000
        assert files[-1].name == log_file_name(52)
        expected = [(z, bytes([z]) * 100) for z in range(1, 51)]
        expected += [(51, b"B" * 3000), (52, b"after")]
        assert all_records(log) == expected
    with TxnLog.open(log_dir, file_bytes=1024) as log:
        assert all_records(log) == expected


def test_read_from_is_a_snapshot_of_the_log(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        fill(log, range(1, 4))
        it = log.read_from(0)
        fill(log, range(4, 6))
        assert [z for z, _ in it] == [1, 2, 3]


def test_purge_before(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        expected: list[tuple[int, bytes]] = []
        for start in (1, 11, 21, 31):
            expected += fill(log, range(start, start + 10))
            log.roll()
        # files: 1..10, 11..20, 21..30, 31..40
        assert log.purge_before(0) == 0
        assert log.purge_before(9) == 0  # file 1 still holds 10
        assert log.purge_before(10) == 1
        assert log.files()[0].name == log_file_name(11)
        assert all_records(log) == expected[10:]
        assert list(log.read_from(25)) == expected[25:]
        assert log.purge_before(1000) == 2  # never the newest file
        assert [p.name for p in log.files()] == [log_file_name(31)]
        assert log.purge_before(1000) == 0
        assert all_records(log) == expected[30:]
        expected += fill(log, [41])
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == expected[30:]
        assert log.last_zxid == 41
    assert sorted(p.name for p in log_dir.iterdir()) == [log_file_name(31), log_file_name(41)]


def test_sync_without_fsync_only_advances_durable(log_dir: Path) -> None:
    with TxnLog.open(log_dir, fsync=False) as log:
        fill(log, range(1, 4))
        assert log.durable_zxid == 0
        assert log.sync() == 3
        assert log.durable_zxid == 3
        log.roll()
        fill(log, [4])
        assert log.sync() == 4


def test_fsync_covers_rolled_files_and_directory(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TxnLog.open(log_dir) as log:
        calls: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        fill(log, range(1, 3))
        log.roll()
        fill(log, range(3, 5))
        assert log.sync() == 4
        # the rolled file, the current file, and the directory (new files were created)
        assert len(calls) == 3
        calls.clear()
        assert log.sync() == 4  # nothing new: no fsync at all
        assert calls == []


def test_failed_fsync_makes_the_log_unusable(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = TxnLog.open(log_dir)
    fill(log, range(1, 3))

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        log.sync()
    assert log.durable_zxid == 0
    with pytest.raises(TxnLogError):
        log.append(3, b"x")
    with pytest.raises(TxnLogError):
        log.sync()
    log.close()  # does not try to sync again
    monkeypatch.undo()
    with TxnLog.open(log_dir) as log:
        assert [z for z, _ in all_records(log)] == [1, 2]


def test_failed_write_leaves_no_partial_record(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    with TxnLog.open(log_dir) as log:
        fill(log, range(1, 4))

        def half_then_enospc(fd: int, buffers: list[bytes]) -> int:
            data = b"".join(buffers)
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "injected ENOSPC")

        monkeypatch.setattr(os, "writev", half_then_enospc)
        with pytest.raises(OSError, match="ENOSPC"):
            log.append(4, b"x" * 100)
        assert log.last_zxid == 3
        monkeypatch.setattr(os, "writev", real_writev)
        log.append(4, b"y" * 100)
        # The same on the first record of a new file: the file must not survive.
        log.roll()
        monkeypatch.setattr(os, "writev", half_then_enospc)
        with pytest.raises(OSError, match="ENOSPC"):
            log.append(5, b"z")
        monkeypatch.setattr(os, "writev", real_writev)
        assert not (log_dir / log_file_name(5)).exists()
        log.append(6, b"w")
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == [*[(z, rec(z)) for z in range(1, 4)], (4, b"y" * 100), (6, b"w")]


def test_concurrent_appends_and_syncs(log_dir: Path) -> None:
    """The server's pattern: the event loop appends while a worker thread syncs."""
    n = 3000
    results: list[int] = []
    with TxnLog.open(log_dir, file_bytes=4096) as log:
        done = threading.Event()

        def syncer() -> None:
            while not done.is_set():
                results.append(log.sync())
            results.append(log.sync())

        t = threading.Thread(target=syncer)
        t.start()
        try:
            for z in range(1, n + 1):
                log.append(z, rec(z))
                if z % 97 == 0:
                    log.roll()
        finally:
            done.set()
            t.join()
        assert results == sorted(results)
        assert results[-1] == n
        assert log.durable_zxid == n
        assert len(log.files()) > 10
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == [(z, rec(z)) for z in range(1, n + 1)]


def test_unrelated_files_are_ignored(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        fill(log, range(1, 3))
    (log_dir / "log.notazxid").write_bytes(b"junk")
    (log_dir / "snapshot.0000000000000001").write_bytes(b"junk")
    with TxnLog.open(log_dir) as log:
        assert [z for z, _ in all_records(log)] == [1, 2]
    assert (log_dir / "log.notazxid").exists()


# ---------------------------------------------------------------------------- recovery


def make_files(log_dir: Path, groups: list[list[int]]) -> list[tuple[int, bytes]]:
    """One file per group of zxids."""
    expected: list[tuple[int, bytes]] = []
    with TxnLog.open(log_dir, fsync=False) as log:
        for group in groups:
            expected += fill(log, group)
            log.roll()
    return expected


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(start offset, end offset) of every record in a log file."""
    data = path.read_bytes()
    pos = FILE_HEADER
    out = []
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((pos, pos + RECORD_HEADER + length))
        pos += RECORD_HEADER + length
    return out


def test_corruption_in_a_non_last_file_truncates_there_and_drops_later_files(
    log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = make_files(log_dir, [[1, 2, 3], [4, 5, 6], [7, 8]])
    middle = log_dir / log_file_name(4)
    start, _ = record_offsets(middle)[1]  # record 5
    data = bytearray(middle.read_bytes())
    data[start + RECORD_HEADER] ^= 0xFF
    middle.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="coordinator.txnlog"), TxnLog.open(log_dir) as log:
        assert all_records(log) == expected[:4]
        assert log.last_zxid == 4
        assert [p.name for p in log.files()] == [log_file_name(1), log_file_name(4)]
        log.append(5, b"new five")
    assert any("non-final" in r.getMessage() for r in caplog.records)
    assert not (log_dir / log_file_name(7)).exists()
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == [*expected[:4], (5, b"new five")]


def test_non_last_file_without_records_drops_it_and_later_files(log_dir: Path) -> None:
    expected = make_files(log_dir, [[1, 2], [3, 4], [5]])
    (log_dir / log_file_name(3)).write_bytes(b"")
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == expected[:2]
    assert sorted(p.name for p in log_dir.iterdir()) == [log_file_name(1)]


@pytest.mark.parametrize("content", [b"", b"RVT", b"RVTL\x00\x01\x00\x00"])
def test_last_file_without_records_is_deleted(log_dir: Path, content: bytes) -> None:
    expected = make_files(log_dir, [[1, 2], [3, 4]])
    (log_dir / log_file_name(9)).write_bytes(content)
    with TxnLog.open(log_dir) as log:
        assert all_records(log) == expected
        assert log.last_zxid == 4
        log.append(5, b"five")  # must not land in a file named log.<9>
        assert log.files()[-1].name == log_file_name(3)
    assert not (log_dir / log_file_name(9)).exists()


def test_overlapping_files_are_unrecoverable(log_dir: Path) -> None:
    make_files(log_dir, [[1, 2, 3], [4, 5]])
    shutil.copy(log_dir / log_file_name(1), log_dir / log_file_name(2))
    with pytest.raises(TxnLogCorruption, match="starts at"):
        TxnLog.open(log_dir)
    TxnLog.open(log_dir / "other").close()  # the failed open released the lock


def test_file_name_disagreeing_with_first_record_is_unrecoverable(log_dir: Path) -> None:
    make_files(log_dir, [[1, 2, 3], [4, 5]])
    (log_dir / log_file_name(4)).rename(log_dir / log_file_name(5))
    with pytest.raises(TxnLogCorruption, match="file name"):
        TxnLog.open(log_dir)


def test_unknown_format_version_is_unrecoverable(log_dir: Path) -> None:
    make_files(log_dir, [[1, 2]])
    path = log_dir / log_file_name(1)
    data = bytearray(path.read_bytes())
    data[5] = 99  # version
    path.write_bytes(bytes(data))
    with pytest.raises(TxnLogCorruption, match="version"):
        TxnLog.open(log_dir)
    assert path.stat().st_size == len(data)  # nothing destroyed


def test_non_monotonic_record_is_treated_as_corrupt_tail(log_dir: Path) -> None:
    make_files(log_dir, [[1, 2, 5]])
    path = log_dir / log_file_name(1)
    # Append a well-formed record whose zxid goes backwards.
    payload = b"back"
    zb = struct.pack(">q", 3)
    crc = zlib.crc32(payload, zlib.crc32(zb))
    with open(path, "ab") as f:
        f.write(struct.pack(">IIq", len(payload), crc, 3) + payload)
    with TxnLog.open(log_dir) as log:
        assert [z for z, _ in all_records(log)] == [1, 2, 5]


def test_read_from_detects_corruption_after_open(log_dir: Path) -> None:
    with TxnLog.open(log_dir) as log:
        fill(log, range(1, 4))
        path = log.files()[0]
        start, _ = record_offsets(path)[1]
        with open(path, "r+b") as f:
            f.seek(start + RECORD_HEADER)
            f.write(b"\xff")
        with pytest.raises(TxnLogCorruption):
            all_records(log)
        assert list(log.read_from(2)) == [(3, rec(3))]


def test_torn_tail_at_every_byte(log_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Cut the last file at every byte: recovery keeps exactly the whole records before it."""
    payloads = {z: os.urandom(z * 7 % 23) for z in range(1, 9)}
    with TxnLog.open(log_dir, fsync=False) as log:
        for z in range(1, 4):
            log.append(z, payloads[z])
        log.roll()
        for z in range(4, 9):
            log.append(z, payloads[z])
    last = log_dir / log_file_name(4)
    original = last.read_bytes()
    ends = [end for _, end in record_offsets(last)]
    assert ends[-1] == len(original)
    first = log_dir / log_file_name(1)
    first_original = first.read_bytes()
    for cut in range(len(original)):
        for extra in set(log_dir.iterdir()) - {last, first}:
            extra.unlink()
        first.write_bytes(first_original)  # the append after recovery may have gone here
        last.write_bytes(original[:cut])
        whole = sum(1 for e in ends if e <= cut)
        expected = [(z, payloads[z]) for z in range(1, 4 + whole)]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="coordinator.txnlog"):
            log = TxnLog.open(log_dir, fsync=False)
        try:
            assert all_records(log) == expected, cut
            assert log.last_zxid == 3 + whole
            dropped = cut - (ends[whole - 1] if whole else 0)
            if dropped > 0:
                assert any(f"{dropped} byte(s)" in r.getMessage() for r in caplog.records), cut
            log.append(100, b"after recovery")
        finally:
            log.close()
        with TxnLog.open(log_dir, fsync=False) as log:
            assert all_records(log) == [*expected, (100, b"after recovery")], cut


# ---------------------------------------------------------------------------- hypothesis

payloads_st = st.lists(st.binary(max_size=200), min_size=1, max_size=25)


def write_log(directory: Path, payloads: list[bytes], roll_every: int) -> list[tuple[int, bytes]]:
    expected = []
    with TxnLog.open(directory, file_bytes=1024, fsync=False) as log:
        for i, p in enumerate(payloads, start=1):
            log.append(i * 2, p)  # even zxids: gaps on purpose
            expected.append((i * 2, p))
            if i % roll_every == 0:
                log.roll()
    return expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=payloads_st, roll_every=st.integers(1, 10), data=st.data())
def test_torn_tail_recovers_whole_record_prefix(
    payloads: list[bytes], roll_every: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        expected = write_log(directory, payloads, roll_every)
        files = sorted(directory.iterdir())
        last = files[-1]
        first_in_last = int(last.name[4:], 16)
        before = [r for r in expected if r[0] < first_in_last]
        extents = record_offsets(last)
        cut = data.draw(st.integers(0, last.stat().st_size), label="cut")
        with open(last, "r+b") as f:
            f.truncate(cut)
        whole = sum(1 for _, end in extents if end <= cut)
        in_last = [r for r in expected if r[0] >= first_in_last]
        with TxnLog.open(directory, file_bytes=1024, fsync=False) as log:
            assert all_records(log) == before + in_last[:whole]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=payloads_st, roll_every=st.integers(1, 10), data=st.data())
def test_corrupt_byte_in_last_file_drops_that_record_and_after(
    payloads: list[bytes], roll_every: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        expected = write_log(directory, payloads, roll_every)
        last = sorted(directory.iterdir())[-1]
        extents = record_offsets(last)
        tail_only = data.draw(st.booleans(), label="tail_only")
        lo = extents[-1][0] if tail_only else FILE_HEADER
        pos = data.draw(st.integers(lo, extents[-1][1] - 1), label="pos")
        flip = data.draw(st.integers(1, 255), label="xor")
        blob = bytearray(last.read_bytes())
        blob[pos] ^= flip
        last.write_bytes(bytes(blob))
        hit = next(i for i, (s, e) in enumerate(extents) if s <= pos < e)
        first_in_last = int(last.name[4:], 16)
        keep = [r for r in expected if r[0] < first_in_last]
        keep += [r for r in expected if r[0] >= first_in_last][:hit]
        with TxnLog.open(directory, file_bytes=1024, fsync=False) as log:
            assert all_records(log) == keep
            assert log.last_zxid == (keep[-1][0] if keep else 0)


class TxnLogMachine(RuleBasedStateMachine):
    """Appends, syncs, rolls, reopens, purges and reads, checked against a list."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="txnlog-machine-")
        self.dir = Path(self.tmp)
        self.model: list[tuple[int, bytes]] = []
        self.last = 0
        self.log = TxnLog.open(self.dir, file_bytes=1024, fsync=False)

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize()
    def start(self) -> None:
        assert self.log.last_zxid == 0

    @rule(gap=st.integers(1, 3), payload=st.binary(max_size=300))
    def append(self, gap: int, payload: bytes) -> None:
        zxid = self.last + gap
        self.log.append(zxid, payload)
        self.model.append((zxid, payload))
        self.last = zxid

    @rule(back=st.integers(0, 2))
    def append_stale_is_rejected(self, back: int) -> None:
        with pytest.raises(ValueError):
            self.log.append(max(self.last - back, 0), b"stale")

    @rule()
    def sync(self) -> None:
        assert self.log.sync() == self.last
        assert self.log.durable_zxid == self.last

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = TxnLog.open(self.dir, file_bytes=1024, fsync=False)
        assert self.log.durable_zxid == self.last

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def purge_before(self, data: st.DataObject) -> None:
        z = data.draw(st.integers(0, self.last + 1), label="purge zxid")
        self.log.purge_before(z)
        remaining = all_records(self.log)
        # a suffix of the model that still holds every record above z and the newest file
        assert remaining == self.model[len(self.model) - len(remaining) :]
        assert [r for r in self.model if r[0] > z] == [r for r in remaining if r[0] > z]
        assert remaining
        self.model = remaining

    @rule(data=st.data())
    def read_from(self, data: st.DataObject) -> None:
        z = data.draw(st.integers(0, self.last + 1), label="read_from zxid")
        assert list(self.log.read_from(z)) == [r for r in self.model if r[0] > z]

    @invariant()
    def zxids(self) -> None:
        assert self.log.last_zxid == self.last
        assert self.log.durable_zxid <= self.last

    @invariant()
    def files_are_named_by_first_zxid(self) -> None:
        for path in self.log.files():
            assert path.name.startswith("log.")


TxnLogMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_txnlog_machine = TxnLogMachine.TestCase


# ---------------------------------------------------------------------------- kill -9


CHILD = Path(__file__).with_name("txnlog_crash_child.py")


@pytest.mark.slow
def test_kill9_keeps_every_acknowledged_zxid(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    rng = random.Random()
    seed = rng.randrange(2**32)
    acknowledged: list[int] = []
    for round_no in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(directory), str(seed + round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None
        kill_after = rng.randrange(20, 400)
        seen = 0
        try:
            for line in proc.stdout:
                zxid = int(line)
                assert not acknowledged or zxid >= acknowledged[-1]
                acknowledged.append(zxid)
                seen += 1
                if seen >= kill_after:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
        assert seen >= kill_after, err.decode(errors="replace")
        with TxnLog.open(directory, file_bytes=64 * 1024) as log:
            records = all_records(log)
            zxids = [z for z, _ in records]
            # A gap-free prefix 1..last, every payload intact, and everything acknowledged.
            assert zxids == list(range(1, len(zxids) + 1)), f"seed {seed}, round {round_no}"
            for z, payload in records:
                assert payload == payload_for(z), f"zxid {z}, seed {seed}"
            assert log.last_zxid >= acknowledged[-1], f"seed {seed}, round {round_no}"
            assert len(log.files()) > 1
