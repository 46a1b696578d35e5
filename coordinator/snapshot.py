"""Snapshots of the coordinator's znode tree: whole, checksummed, atomically written files.

The server serialises its tree (opaque bytes here) together with the zxid of the
last transaction the snapshot contains, and after a restart loads the newest
valid snapshot and replays the transaction log from that zxid
(:meth:`coordinator.txnlog.TxnLog.read_from`).

File format
-----------
A snapshot is one file named ``snapshot.<zxid>`` (16 lower-case hex digits)::

    header   ">4sHHqQI"  magic b"RVSN", format version (1), reserved (0),
                         zxid (i64), payload length (u64),
                         CRC-32 of every header byte before it and the payload
    payload  ``length`` bytes

A snapshot is valid when its magic and version are right, its zxid matches its
file name, its length matches the file size and the CRC matches. Only valid
snapshots count: :meth:`SnapshotStore.latest` skips a damaged newest snapshot
(with a warning) and uses an older one, and :meth:`SnapshotStore.purge` keeps
the newest ``keep`` *valid* snapshots, so it never returns a zxid the server
could not actually restore from.

Writing is atomic: the payload goes to ``snapshot.<zxid>.tmp``, is fsynced,
renamed over the final name, and the directory is fsynced. A crash leaves at
worst a stray ``.tmp`` file, which is ignored and removed by ``purge``.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import zlib
from pathlib import Path

__all__ = ["SNAPSHOT_MAGIC", "SNAPSHOT_VERSION", "SnapshotStore", "snapshot_file_name"]

logger = logging.getLogger(__name__)

SNAPSHOT_MAGIC = b"RVSN"
SNAPSHOT_VERSION = 1
_HEADER = struct.Struct(">4sHHqQI")  # magic, version, reserved, zxid, length, crc
_CRC_COVERED = struct.Struct(">4sHHqQ")  # the header up to the crc: covered by it
_MAX_ZXID = 2**63 - 1
_NAME_RE = re.compile(r"^snapshot\.([0-9a-f]{16})$")
_TMP_RE = re.compile(r"^snapshot\.[0-9a-f]{16}\.tmp$")


def snapshot_file_name(zxid: int) -> str:
    """The name of the snapshot file for ``zxid``."""
    return f"snapshot.{zxid:016x}"


def _crc(zxid: int, payload: bytes, *, version: int = SNAPSHOT_VERSION, reserved: int = 0) -> int:
    covered = _CRC_COVERED.pack(SNAPSHOT_MAGIC, version, reserved, zxid, len(payload))
    return zlib.crc32(payload, zlib.crc32(covered))


class _Invalid(Exception):
    """A snapshot file failed validation (internal; turned into a warning)."""


def _read_valid(path: Path, zxid: int) -> bytes:
    """The payload of the snapshot at ``path``, or _Invalid saying what is wrong with it."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise _Invalid(f"truncated header ({size} bytes)")
        magic, version, reserved, hzxid, length, crc = _HEADER.unpack(head)
        if magic != SNAPSHOT_MAGIC:
            raise _Invalid(f"bad magic {magic!r}")
        if version != SNAPSHOT_VERSION:
            raise _Invalid(f"unsupported version {version}")
        if hzxid != zxid:
            raise _Invalid(f"header zxid {hzxid:#x} does not match the file name")
        if length != size - _HEADER.size:
            raise _Invalid(f"header says {length} payload bytes, file holds {size - _HEADER.size}")
        payload = f.read(length)
    if len(payload) != length:
        raise _Invalid("short read")
    if _crc(zxid, payload, version=version, reserved=reserved) != crc:
        raise _Invalid("CRC mismatch")
    return payload


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    """A directory of snapshots; see the module docstring. Safe to share between threads."""

    def __init__(self, directory: Path, *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._keep = keep
        # Serialises write() and purge(), so purge never deletes a .tmp being written.
        self._lock = threading.Lock()
        # Files known valid (written by us or checked), keyed by name -> (size, mtime_ns), so
        # purge() need not re-read large snapshots every time.
        self._known_valid: dict[str, tuple[int, int]] = {}

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def keep(self) -> int:
        return self._keep

    def snapshots(self) -> list[tuple[int, Path]]:
        """All snapshot files (valid or not, no .tmp), newest first."""
        found: list[tuple[int, Path]] = []
        for entry in self._directory.iterdir():
            m = _NAME_RE.match(entry.name)
            if m is not None and entry.is_file():
                found.append((int(m.group(1), 16), entry))
        found.sort(reverse=True)
        return found

    def write(self, zxid: int, payload: bytes) -> Path:
        """Write a snapshot atomically and durably; returns its path.

        A snapshot already present for the same zxid is replaced.
        """
        if not 0 <= zxid <= _MAX_ZXID:
            raise ValueError(f"zxid {zxid} out of range 0..{_MAX_ZXID}")
        header = _HEADER.pack(
            SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, zxid, len(payload), _crc(zxid, payload)
        )
        name = snapshot_file_name(zxid)
        final = self._directory / name
        tmp = self._directory / f"{name}.tmp"
        with self._lock:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                try:
                    _write_all(fd, [header, payload])
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(self._directory)
            st = final.stat()
            self._known_valid[name] = (st.st_size, st.st_mtime_ns)
        return final

    def _is_known_valid(self, path: Path) -> bool:
        sig = self._known_valid.get(path.name)
        if sig is None:
            return False
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        return sig == (st.st_size, st.st_mtime_ns)

    def _check(self, zxid: int, path: Path) -> bytes | None:
        """The payload if the snapshot is valid; None (and a warning) if it is not."""
        try:
            payload = _read_valid(path, zxid)
        except _Invalid as exc:
            logger.warning("snapshot %s is invalid (%s); skipping it", path, exc)
            self._known_valid.pop(path.name, None)
            return None
        st = os.stat(path)
        self._known_valid[path.name] = (st.st_size, st.st_mtime_ns)
        return payload

    def latest(self) -> tuple[int, bytes] | None:
        """The zxid and payload of the newest valid snapshot, or None if there is none."""
        for zxid, path in self.snapshots():
            try:
                payload = self._check(zxid, path)
            except FileNotFoundError:
                continue  # purged meanwhile
            if payload is not None:
                return zxid, payload
        return None

    def purge(self) -> int | None:
        """Keep the newest ``keep`` valid snapshots; delete the rest and stray .tmp files.

        Invalid snapshots are deleted too (each with a warning when found). Returns the zxid
        of the oldest snapshot kept, so the caller can purge the transaction log up to it;
        None when there is no valid snapshot (then nothing but .tmp files is deleted).
        """
        with self._lock:
            for entry in self._directory.iterdir():
                if _TMP_RE.match(entry.name):
                    logger.info("removing stray snapshot temp file %s", entry)
                    entry.unlink(missing_ok=True)
            kept: list[int] = []
            doomed: list[Path] = []
            invalid: list[Path] = []
            for zxid, path in self.snapshots():
                if len(kept) >= self._keep:
                    doomed.append(path)
                elif self._is_known_valid(path) or self._check(zxid, path) is not None:
                    kept.append(zxid)
                else:
                    invalid.append(path)
            if not kept:
                return None
            for path in [*invalid, *doomed]:
                path.unlink(missing_ok=True)
                self._known_valid.pop(path.name, None)
            return kept[-1]


def _write_all(fd: int, buffers: list[bytes]) -> None:
    total = sum(len(b) for b in buffers)
    written = os.writev(fd, buffers)
    if written < total:  # rare: huge payloads, signals
        rest = memoryview(b"".join(buffers))[written:]
        while rest:
            n = os.write(fd, rest)
            rest = rest[n:]
