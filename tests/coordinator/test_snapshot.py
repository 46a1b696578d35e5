"""Tests for coordinator.snapshot: atomic writes, validation, fallback and purging."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.snapshot import SnapshotStore, snapshot_file_name

HEADER = 28  # ">4sHHqQI"


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snaps")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_empty_store(store: SnapshotStore) -> None:
    assert store.directory.is_dir()
    assert store.latest() is None
    assert store.purge() is None
    assert store.snapshots() == []


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SnapshotStore(tmp_path, keep=0)


def test_write_and_latest(store: SnapshotStore) -> None:
    path = store.write(5, b"tree at five")
    assert path == store.directory / "snapshot.0000000000000005"
    assert path.stat().st_size == HEADER + len(b"tree at five")
    assert store.latest() == (5, b"tree at five")
    store.write(9, b"tree at nine")
    store.write(7, b"tree at seven")  # order of writing does not matter, zxid does
    assert store.latest() == (9, b"tree at nine")
    assert names(store.directory) == [snapshot_file_name(z) for z in (5, 7, 9)]
    # a new store object over the same directory sees the same
    assert SnapshotStore(store.directory).latest() == (9, b"tree at nine")


def test_zero_zxid_and_empty_payload(store: SnapshotStore) -> None:
    store.write(0, b"")
    assert store.latest() == (0, b"")


def test_write_rejects_bad_zxid(store: SnapshotStore) -> None:
    with pytest.raises(ValueError):
        store.write(-1, b"x")
    with pytest.raises(ValueError):
        store.write(2**63, b"x")


def test_rewrite_same_zxid_replaces(store: SnapshotStore) -> None:
    store.write(3, b"first")
    store.write(3, b"second")
    assert store.latest() == (3, b"second")
    assert names(store.directory) == [snapshot_file_name(3)]


def test_large_payload(store: SnapshotStore) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    store.write(1, payload)
    assert store.latest() == (1, payload)


@pytest.mark.parametrize(
    "damage",
    ["truncate_payload", "truncate_header", "flip_payload", "flip_zxid", "flip_magic", "extend"],
)
def test_corrupt_newest_falls_back_to_previous(
    store: SnapshotStore, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.write(10, b"older tree")
    newest = store.write(20, b"newer tree" * 10)
    data = bytearray(newest.read_bytes())
    if damage == "truncate_payload":
        data = data[:-3]
    elif damage == "truncate_header":
        data = data[:10]
    elif damage == "flip_payload":
        data[HEADER + 4] ^= 0x01
    elif damage == "flip_zxid":
        data[8 + 7] ^= 0x01
    elif damage == "flip_magic":
        data[0] ^= 0x01
    else:
        data += b"\x00"
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="coordinator.snapshot"):
        assert store.latest() == (10, b"older tree")
    assert any("invalid" in r.getMessage() for r in caplog.records)


def test_all_corrupt_gives_none(store: SnapshotStore) -> None:
    path = store.write(1, b"only")
    path.write_bytes(path.read_bytes()[:-1])
    assert store.latest() is None
    assert store.purge() is None
    assert path.exists()  # nothing valid to keep: nothing deleted


def test_file_name_must_match_header(store: SnapshotStore) -> None:
    path = store.write(1, b"one")
    path.rename(store.directory / snapshot_file_name(2))
    assert store.latest() is None


def test_leftover_tmp_is_ignored_and_purged(store: SnapshotStore) -> None:
    store.write(4, b"good")
    tmp = store.directory / f"{snapshot_file_name(8)}.tmp"
    tmp.write_bytes(b"half a snapshot")
    other = store.directory / "log.0000000000000001"  # not ours: left alone
    other.write_bytes(b"txn log")
    assert store.latest() == (4, b"good")
    assert store.purge() == 4
    assert not tmp.exists()
    assert other.exists()
    assert names(store.directory) == ["log.0000000000000001", snapshot_file_name(4)]


def test_purge_keeps_newest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    assert store.keep == 3
    store.write(1, b"a")
    assert store.purge() == 1
    store.write(2, b"b")
    assert store.purge() == 1
    for z in (3, 4, 5, 6):
        store.write(z, bytes([z]))
    assert store.purge() == 4
    assert names(tmp_path) == [snapshot_file_name(z) for z in (4, 5, 6)]
    assert store.purge() == 4  # idempotent
    assert store.latest() == (6, b"\x06")


def test_purge_counts_only_valid_snapshots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged newest snapshot must not push the only usable one out."""
    store = SnapshotStore(tmp_path, keep=1)
    store.write(1, b"a")
    store.write(2, b"b")
    bad = store.write(3, b"c")
    bad.write_bytes(bad.read_bytes()[:-1])
    with caplog.at_level(logging.WARNING, logger="coordinator.snapshot"):
        assert store.purge() == 2
    assert names(tmp_path) == [snapshot_file_name(2)]
    assert store.latest() == (2, b"b")


def test_purge_notices_a_snapshot_damaged_after_it_was_written(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    for z in (1, 2, 3):
        store.write(z, b"payload %d" % z)
    assert store.purge() == 2
    newest = tmp_path / snapshot_file_name(3)
    newest.write_bytes(newest.read_bytes()[:-2])  # changes size: the cached check is stale
    assert store.purge() == 2
    assert names(tmp_path) == [snapshot_file_name(2)]


def test_failed_write_leaves_previous_snapshot(
    store: SnapshotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(1, b"good")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        store.write(2, b"never")
    monkeypatch.undo()
    assert names(store.directory) == [snapshot_file_name(1)]
    assert store.latest() == (1, b"good")


@settings(max_examples=100, deadline=None)
@given(
    writes=st.lists(st.tuples(st.integers(0, 50), st.binary(max_size=64)), min_size=1, max_size=12),
    keep=st.integers(1, 4),
    data=st.data(),
)
def test_latest_and_purge_match_a_model(
    writes: list[tuple[int, bytes]], keep: int, data: st.DataObject
) -> None:
    """Random writes, random damage: latest() is the newest undamaged, purge() keeps `keep`."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SnapshotStore(Path(tmp), keep=keep)
        model: dict[int, bytes] = {}
        for zxid, payload in writes:
            store.write(zxid, payload)
            model[zxid] = payload
        damaged = data.draw(st.sets(st.sampled_from(sorted(model))), label="damaged")
        for zxid in damaged:
            path = Path(tmp) / snapshot_file_name(zxid)
            blob = bytearray(path.read_bytes())
            pos = data.draw(st.integers(0, len(blob) - 1), label="pos")
            blob[pos] ^= data.draw(st.integers(1, 255), label="xor")
            path.write_bytes(bytes(blob))
        valid = sorted((z for z in model if z not in damaged), reverse=True)
        expected_latest = (valid[0], model[valid[0]]) if valid else None
        assert store.latest() == expected_latest
        oldest_kept = store.purge()
        if not valid:
            assert oldest_kept is None
        else:
            kept = valid[:keep]
            assert oldest_kept == kept[-1]
            assert names(Path(tmp)) == sorted(snapshot_file_name(z) for z in kept)
            assert store.latest() == expected_latest
