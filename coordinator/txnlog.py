"""The coordinator's transaction log: an append-only, checksummed, segmented record log.

The server keeps its znode tree in memory and makes every change durable by
appending one opaque record per transaction here (ZooKeeper's ``log.<zxid>``
files), plus periodic snapshots (:mod:`coordinator.snapshot`). This module does
not know what a record means; it stores ``(zxid, bytes)`` pairs in zxid order.

On-disk layout
--------------
The log is a directory of files named ``log.<zxid>``, where ``<zxid>`` is the
zxid of the file's first record as 16 lower-case hex digits. A file is created
lazily by the first append that goes into it, so every file holds at least one
record. Each file is::

    file header   ">4sHH"  magic b"RVTL", format version (1), reserved (0)
    record*       ">IIq"   payload length (u32), CRC-32 (u32), zxid (i64)
                  payload  ``length`` bytes

The CRC-32 (``zlib.crc32``) covers the 8 zxid bytes followed by the payload, so
a record whose zxid, length or payload is damaged is detected. zxids are
strictly increasing within a file and across files; they need not be
consecutive. Files are not preallocated: a file ends after its last record.

Durability
----------
:meth:`TxnLog.append` is cheap: one ``os.writev`` into the page cache, under a
lock, never an fsync. :meth:`TxnLog.sync` (meant for a worker thread) captures
the last appended zxid under the lock, then fsyncs, outside the lock, every file
written since the previous sync (and the directory when a file was created), and
finally reports that zxid as durable. Appends may continue during the fsync;
they are covered by a later sync. Concurrent ``sync`` calls are serialised.
A failed fsync leaves the log unusable (:class:`TxnLogError` from then on): after
a failed fsync the kernel may already have dropped the dirty pages, so retrying
could report data durable that is not (PostgreSQL's "fsyncgate").

Recovery
--------
:meth:`TxnLog.open` scans the files in zxid order and validates every record:
the length must fit in the file, the CRC must match and the zxid must be larger
than the previous one. At the first bad record of the *last* file the file is
truncated there (a torn write from a crash) and a warning tells how many bytes
were dropped; a last file left without records is deleted. A bad record in an
*earlier* file means committed history is damaged: the file is truncated there,
every later file is deleted, and an error is logged. What cannot be repaired
raises :class:`TxnLogCorruption`: files whose zxid ranges overlap, a file whose
first record disagrees with its name, or a format version this code does not
know. Recovery fsyncs the surviving files, so ``durable_zxid == last_zxid``
right after ``open``.

The directory is locked with ``flock`` while open, so two ``TxnLog`` objects
(in one process or two) never write the same log.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "FILE_MAGIC",
    "FILE_VERSION",
    "MAX_RECORD_BYTES",
    "MAX_ZXID",
    "TxnLog",
    "TxnLogCorruption",
    "TxnLogError",
    "log_file_name",
]

logger = logging.getLogger(__name__)

FILE_MAGIC = b"RVTL"
FILE_VERSION = 1
_FILE_HEADER = struct.Struct(">4sHH")  # magic, version, reserved
_FILE_HEADER_BYTES = _FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, 0)
_RECORD_HEADER = struct.Struct(">IIq")  # payload length, crc32(zxid + payload), zxid
_ZXID = struct.Struct(">q")

MAX_ZXID = 2**63 - 1
MAX_RECORD_BYTES = 2**32 - 1
_MIN_FILE_BYTES = 1024
_NAME_RE = re.compile(r"^log\.([0-9a-f]{16})$")


class TxnLogError(Exception):
    """The transaction log cannot be used (locked by another owner, or a failed fsync)."""


class TxnLogCorruption(TxnLogError):
    """The log on disk is damaged in a way recovery cannot repair by truncation."""


def log_file_name(zxid: int) -> str:
    """The name of the log file whose first record has ``zxid``."""
    return f"log.{zxid:016x}"


def _crc(zxid: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_ZXID.pack(zxid)))


@dataclass
class _Segment:
    start: int  # zxid of the first record (also in the file name)
    path: Path
    size: int  # bytes of whole records (plus the file header) written so far


@dataclass
class _Scan:
    valid_end: int  # offset just past the last good record (0 if the header is bad)
    count: int  # number of good records
    last_zxid: int  # zxid of the last good record (0 if none)
    file_size: int
    problem: str | None  # why the scan stopped before the end of the file


def _scan_file(path: Path, start: int) -> _Scan:
    """Validate one log file; stop at the first record that is torn or corrupt."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_FILE_HEADER.size)
        if len(head) < _FILE_HEADER.size:
            return _Scan(0, 0, 0, size, "torn file header")
        magic, version, _reserved = _FILE_HEADER.unpack(head)
        if magic != FILE_MAGIC:
            return _Scan(0, 0, 0, size, f"bad file magic {magic!r}")
        if version != FILE_VERSION:
            raise TxnLogCorruption(f"{path}: unsupported log format version {version}")
        pos = _FILE_HEADER.size
        count = 0
        prev = 0
        while pos < size:
            raw = f.read(_RECORD_HEADER.size)
            if len(raw) < _RECORD_HEADER.size:
                return _Scan(pos, count, prev, size, "torn record header")
            length, crc, zxid = _RECORD_HEADER.unpack(raw)
            if length > size - pos - _RECORD_HEADER.size:
                return _Scan(pos, count, prev, size, "torn record (length past end of file)")
            payload = f.read(length)
            if len(payload) != length:
                return _Scan(pos, count, prev, size, "short read")
            if _crc(zxid, payload) != crc:
                return _Scan(pos, count, prev, size, f"CRC mismatch at offset {pos}")
            if count == 0 and zxid != start:
                raise TxnLogCorruption(
                    f"{path}: first record has zxid {zxid:#x}, the file name says {start:#x}"
                )
            if zxid <= prev:
                return _Scan(
                    pos, count, prev, size, f"zxid {zxid:#x} not above {prev:#x} at offset {pos}"
                )
            prev = zxid
            count += 1
            pos += _RECORD_HEADER.size + length
        return _Scan(pos, count, prev, size, None)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_zxid(zxid: int) -> None:
    if not 0 < zxid <= MAX_ZXID:
        raise ValueError(f"zxid {zxid} out of range 1..{MAX_ZXID}")


class TxnLog:
    """An append-only log of ``(zxid, record)`` pairs; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        dir_fd: int,
        segments: list[_Segment],
        last_zxid: int,
        *,
        file_bytes: int,
        fsync: bool,
    ) -> None:
        """Use :meth:`open`; this constructor takes already recovered state."""
        self._directory = directory
        self._dir_fd = dir_fd
        self._segments = segments
        self._file_bytes = file_bytes
        self._fsync = fsync
        self._lock = threading.Lock()  # guards all the file state below
        self._sync_lock = threading.Lock()  # serialises sync() and close()
        self._last_zxid = last_zxid
        self._durable_zxid = last_zxid
        self._fd: int | None = None  # write fd of segments[-1], None until a new file starts
        self._retired: list[int] = []  # fds of rolled-away files, awaiting fsync + close
        self._dir_dirty = False  # a file was created since the last sync
        self._closed = False
        self._failure: OSError | None = None
        if segments:
            self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls, directory: Path, *, file_bytes: int = 64 * 1024 * 1024, fsync: bool = True
    ) -> TxnLog:
        """Open the log in ``directory`` (created if missing) and recover it after a crash."""
        if file_bytes < _MIN_FILE_BYTES:
            raise ValueError(f"file_bytes must be at least {_MIN_FILE_BYTES}, got {file_bytes}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TxnLogError(f"{directory} is in use by another TxnLog") from None
            segments, last_zxid = cls._recover(directory, fsync=fsync)
            return cls(directory, dir_fd, segments, last_zxid, file_bytes=file_bytes, fsync=fsync)
        except BaseException:
            os.close(dir_fd)
            raise

    @staticmethod
    def _recover(directory: Path, *, fsync: bool) -> tuple[list[_Segment], int]:
        found: list[tuple[int, Path]] = []
        for entry in directory.iterdir():
            m = _NAME_RE.match(entry.name)
            if m is not None and entry.is_file():
                found.append((int(m.group(1), 16), entry))
        found.sort()

        segments: list[_Segment] = []
        last_zxid = 0
        dir_changed = False
        for i, (start, path) in enumerate(found):
            if start <= last_zxid:
                raise TxnLogCorruption(
                    f"{path.name} starts at zxid {start:#x}, but the previous file already "
                    f"reaches {last_zxid:#x}"
                )
            scan = _scan_file(path, start)
            if scan.problem is None and scan.count == 0:
                # Only a crash between creating a file and its first record landing leaves this.
                scan.problem = "no records after the file header"
            is_last = i == len(found) - 1
            if scan.problem is not None:
                # A file left without records is deleted, so all of it is dropped.
                kept = scan.valid_end if scan.count else 0
                dropped = scan.file_size - kept
                action = "truncating" if scan.count else "deleting the file"
                later = [p for _, p in found[i + 1 :]]
                if is_last:
                    logger.warning(
                        "txn log %s: %s; %s, dropping %d byte(s) of torn tail after %d good "
                        "record(s)",
                        path,
                        scan.problem,
                        action,
                        dropped,
                        scan.count,
                    )
                else:
                    logger.error(
                        "txn log %s: %s in a non-final file; %s, dropping %d byte(s) after %d "
                        "good record(s), and deleting %d later file(s): %s",
                        path,
                        scan.problem,
                        action,
                        dropped,
                        scan.count,
                        len(later),
                        ", ".join(p.name for p in later),
                    )
                for p in later:
                    p.unlink()
                    dir_changed = True
                if scan.count == 0:
                    path.unlink()
                    dir_changed = True
                    break
                with open(path, "r+b") as f:
                    f.truncate(scan.valid_end)
                    if fsync:
                        os.fsync(f.fileno())
                segments.append(_Segment(start, path, scan.valid_end))
                last_zxid = scan.last_zxid
                break
            segments.append(_Segment(start, path, scan.valid_end))
            last_zxid = scan.last_zxid
        if fsync:
            # Whatever survived the crash is in the page cache; make it durable before
            # reporting durable_zxid == last_zxid.
            for seg in segments:
                _fsync_path(seg.path)
            if dir_changed or segments:
                _fsync_path(directory, directory=True)
        return segments, last_zxid

    # --------------------------------------------------------------- properties

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def last_zxid(self) -> int:
        """The highest zxid appended (0 when the log is empty)."""
        return self._last_zxid

    @property
    def durable_zxid(self) -> int:
        """The highest zxid known to be on stable storage."""
        return self._durable_zxid

    @property
    def closed(self) -> bool:
        return self._closed

    def files(self) -> list[Path]:
        """The log files, oldest first (for operators and tests)."""
        with self._lock:
            return [seg.path for seg in self._segments]

    # ------------------------------------------------------------------ writing

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError("txn log is closed")
        if self._failure is not None:
            raise TxnLogError("txn log is unusable after a failed write or fsync") from (
                self._failure
            )

    def append(self, zxid: int, record: bytes) -> None:
        """Append one record; buffered in the OS, durable only after :meth:`sync`.

        Raises ValueError when ``zxid`` is not above :attr:`last_zxid`, is out of range,
        or the record is too large for the format.
        """
        _check_zxid(zxid)
        length = len(record)
        if length > MAX_RECORD_BYTES:
            raise ValueError(f"record of {length} bytes exceeds {MAX_RECORD_BYTES}")
        header = _RECORD_HEADER.pack(length, _crc(zxid, record), zxid)
        with self._lock:
            self._check_usable()
            if zxid <= self._last_zxid:
                raise ValueError(f"zxid {zxid:#x} is not above the last zxid {self._last_zxid:#x}")
            if (
                self._fd is not None
                and self._segments[-1].size + len(header) + length > self._file_bytes
            ):
                self._retire_current()
            if self._fd is None:
                self._start_file(zxid, header, record)
            else:
                self._write(self._fd, self._segments[-1], [header, record])
            self._last_zxid = zxid

    def _retire_current(self) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None

    def _start_file(self, zxid: int, header: bytes, record: bytes) -> None:
        path = self._directory / log_file_name(zxid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        seg = _Segment(zxid, path, 0)
        try:
            self._write(fd, seg, [_FILE_HEADER_BYTES, header, record])
        except OSError:
            # Leave no file whose name promises a record it does not hold.
            os.close(fd)
            try:
                path.unlink()
            except OSError as exc:
                self._failure = exc
            raise
        self._fd = fd
        self._segments.append(seg)
        self._dir_dirty = True

    def _write(self, fd: int, seg: _Segment, buffers: list[bytes]) -> None:
        total = sum(len(b) for b in buffers)
        try:
            written = os.writev(fd, buffers)
            if written < total:
                rest = memoryview(b"".join(buffers))[written:]
                while rest:
                    n = os.write(fd, rest)
                    rest = rest[n:]
        except OSError:
            # Cut the partial record off so later appends never follow garbage.
            try:
                os.ftruncate(fd, seg.size)
            except OSError as exc:
                self._failure = exc
            raise
        seg.size += total

    def roll(self) -> None:
        """Make the next append start a new file (a no-op while the current file is new)."""
        with self._lock:
            self._check_usable()
            self._retire_current()

    def sync(self) -> int:
        """Make everything appended so far durable; return the zxid now durable.

        The zxid is captured before the fsync starts; appends made while the fsync runs
        are left to the next sync. Blocking: call it from a worker thread.
        """
        with self._sync_lock:
            return self._sync_holding_sync_lock()

    def _sync_holding_sync_lock(self) -> int:
        with self._lock:
            self._check_usable()
            target = self._last_zxid
            retired = self._retired
            self._retired = []
            fds = [*retired, *([self._fd] if self._fd is not None else [])]
            dir_dirty = self._dir_dirty
            self._dir_dirty = False
            if target == self._durable_zxid and not retired and not dir_dirty:
                return target
        # The fsyncs run without self._lock so that append() keeps going meanwhile. The fds
        # stay open: only this method (under _sync_lock) and close() (same) close them.
        try:
            if self._fsync:
                for fd in fds:
                    os.fsync(fd)
                if dir_dirty:
                    os.fsync(self._dir_fd)
        except OSError as exc:
            with self._lock:
                self._failure = exc
            raise
        finally:
            for fd in retired:
                os.close(fd)
        with self._lock:
            self._durable_zxid = max(self._durable_zxid, target)
        return target

    # ------------------------------------------------------------------ reading

    def read_from(self, zxid: int) -> Iterator[tuple[int, bytes]]:
        """Every record with a zxid above ``zxid``, in order, across files.

        The set of records is fixed when this is called: records appended later are not
        seen. Raises FileNotFoundError if a file is purged while being iterated, and
        TxnLogCorruption if a record no longer matches its checksum.
        """
        with self._lock:
            if self._closed:
                raise ValueError("txn log is closed")
            segs = [(seg.path, seg.size) for seg in self._segments]
            starts = [seg.start for seg in self._segments]
        # Skip files whose records are all <= zxid: file i ends before file i+1 starts.
        first = 0
        for i in range(len(starts) - 1):
            if starts[i + 1] - 1 <= zxid:
                first = i + 1
        return self._iter_records(segs[first:], zxid)

    @staticmethod
    def _iter_records(segs: list[tuple[Path, int]], after: int) -> Iterator[tuple[int, bytes]]:
        for path, end in segs:
            with open(path, "rb") as f:
                yield from _read_file(f, path, end, after)

    # ------------------------------------------------------------------ purging

    def purge_before(self, zxid: int) -> int:
        """Delete whole files whose records are all <= ``zxid``, never the newest file.

        Returns the number of files deleted.
        """
        with self._lock:
            self._check_usable()
            doomed: list[Path] = []
            while len(self._segments) > 1 and self._segments[1].start - 1 <= zxid:
                doomed.append(self._segments.pop(0).path)
        for path in doomed:  # oldest first, so a crash midway leaves no hole
            path.unlink(missing_ok=True)
        if doomed:
            logger.info("txn log: purged %d file(s) up to zxid %#x", len(doomed), zxid)
        return len(doomed)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Sync what is pending (unless the log has failed) and release the files."""
        with self._sync_lock:
            with self._lock:
                if self._closed:
                    return
                pending = self._failure is None and (
                    self._last_zxid != self._durable_zxid or bool(self._retired) or self._dir_dirty
                )
            try:
                if pending:
                    self._sync_holding_sync_lock()
            finally:
                with self._lock:
                    self._closed = True
                    for fd in [*self._retired, *([self._fd] if self._fd is not None else [])]:
                        os.close(fd)
                    self._retired = []
                    self._fd = None
                    os.close(self._dir_fd)  # also releases the flock

    def __enter__(self) -> TxnLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TxnLog({str(self._directory)!r}, last_zxid={self._last_zxid:#x}, "
            f"durable_zxid={self._durable_zxid:#x}, files={len(self._segments)})"
        )


def _read_file(f: BinaryIO, path: Path, end: int, after: int) -> Iterator[tuple[int, bytes]]:
    head = f.read(_FILE_HEADER.size)
    if head != _FILE_HEADER_BYTES:
        raise TxnLogCorruption(f"{path}: bad file header")
    pos = _FILE_HEADER.size
    while pos < end:
        raw = f.read(_RECORD_HEADER.size)
        if len(raw) < _RECORD_HEADER.size:
            raise TxnLogCorruption(f"{path}: record header at offset {pos} is cut short")
        length, crc, zxid = _RECORD_HEADER.unpack(raw)
        if zxid <= after:
            f.seek(length, os.SEEK_CUR)
        else:
            payload = f.read(length)
            if len(payload) != length or _crc(zxid, payload) != crc:
                raise TxnLogCorruption(f"{path}: record at offset {pos} fails its checksum")
            yield zxid, payload
        pos += _RECORD_HEADER.size + length
