"""The broker's data directory: its lock, its identity file and its partition directories.

Layout::

    <data_dir>/.lock                    flock held while a broker runs on the directory
    <data_dir>/meta.json                {"broker_id", "cluster_id"} (Kafka's meta.properties)
    <data_dir>/<topic>-<p>/             one partition log (broker.log), plus partition.metadata
    <data_dir>/<topic>-<p>.<hex>-delete a deleted partition, removed in the background
    <data_dir>/coordinator/             the embedded coordinator's data

The lock makes "this data directory belongs to a live process" a fact, which
lets a restarted broker recognise its own stale registration (broker.registration).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from broker.log.checkpoint import write_atomic
from broker.topic_names import topic_name_problem

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
META_FILE = "meta.json"
PARTITION_METADATA_FILE = "partition.metadata"
DELETE_SUFFIX = "-delete"
_PARTITION_DIR = re.compile(r"^(.+)-(\d+)$")


class DataDirError(RuntimeError):
    """The data directory cannot be used (locked by another process, another broker's, ...)."""


@dataclass(frozen=True, slots=True)
class PartitionDir:
    topic: str
    partition: int
    path: Path


class DataDir:
    """An opened, locked data directory. ``close`` releases the lock."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, path: Path, broker_id: int) -> DataDir:
        """Create if needed, lock, and check that it belongs to ``broker_id``."""
        path = path.absolute()
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DataDirError(f"cannot use data directory {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataDirError(
                f"data directory {path} is in use by another broker process"
            ) from None
        self = cls(path, fd)
        try:
            meta = self.read_meta()
            if meta is not None and meta.get("broker_id") != broker_id:
                raise DataDirError(
                    f"data directory {path} belongs to broker {meta.get('broker_id')}, "
                    f"not {broker_id}"
                )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ------------------------------------------------------------ identity

    def read_meta(self) -> dict[str, object] | None:
        try:
            with open(self.path / META_FILE, "rb") as f:
                value = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DataDirError(f"{self.path / META_FILE} is unreadable: {exc}") from None
        if not isinstance(value, dict):
            raise DataDirError(f"{self.path / META_FILE} is not a JSON object")
        return value

    def check_cluster(self, broker_id: int, cluster_id: str) -> None:
        """Record the cluster on first start; refuse to join another one later."""
        meta = self.read_meta()
        if meta is not None:
            known = meta.get("cluster_id")
            if known and known != cluster_id:
                raise DataDirError(
                    f"data directory {self.path} belongs to cluster {known}, but the "
                    f"coordinator holds cluster {cluster_id}"
                )
            if known == cluster_id:
                return
        body = json.dumps({"broker_id": broker_id, "cluster_id": cluster_id}).encode()
        write_atomic(str(self.path / META_FILE), body)

    # ------------------------------------------------------------ partitions

    def partition_dirs(self) -> list[PartitionDir]:
        """Every ``<topic>-<p>`` directory holding a partition log."""
        out: list[PartitionDir] = []
        for entry in os.scandir(self.path):
            if not entry.is_dir():
                continue
            m = _PARTITION_DIR.match(entry.name)
            if m is None or topic_name_problem(m.group(1)) is not None:
                continue
            out.append(PartitionDir(m.group(1), int(m.group(2)), Path(entry.path)))
        return out

    def deleted_dirs(self) -> list[Path]:
        """Partition directories renamed for deletion whose removal did not finish."""
        return [
            Path(e.path)
            for e in os.scandir(self.path)
            if e.is_dir() and e.name.endswith(DELETE_SUFFIX) and "." in e.name
        ]

    def partition_path(self, topic: str, partition: int) -> Path:
        return self.path / f"{topic}-{partition}"


def read_topic_id(directory: Path) -> str | None:
    """The topic id recorded in a partition directory (None if absent or unreadable)."""
    try:
        text = (directory / PARTITION_METADATA_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "topic_id":
            return value.strip() or None
    return None


def write_topic_id(directory: Path, topic_id: str) -> None:
    """Record which incarnation of the topic a partition directory belongs to (Kafka KIP-516)."""
    if read_topic_id(directory) == topic_id:
        return
    write_atomic(
        str(directory / PARTITION_METADATA_FILE), f"version: 0\ntopic_id: {topic_id}\n".encode()
    )


def mark_deleted(directory: Path) -> Path:
    """Rename a partition directory out of the way (fast); remove it later with ``remove``."""
    target = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{DELETE_SUFFIX}")
    os.replace(directory, target)
    return target


def remove(directory: Path) -> None:
    """Delete a directory tree (blocking; run in a worker thread)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(directory)
    logger.info("deleted %s", directory)
