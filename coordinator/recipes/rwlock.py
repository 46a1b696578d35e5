"""ReadWriteLock: shared readers, one exclusive writer, first come first served.

Readers and writers queue in one sequence of ephemeral-sequential nodes
(``read-``/``write-``). A writer proceeds when its node is the lowest and
watches its immediate predecessor; a reader proceeds when no writer is ahead of
it and watches only the nearest writer ahead (ZooKeeper's shared-lock recipe).
So a writer that queued before a reader goes first, and a stream of readers
cannot starve a writer: readers arriving after it wait behind it.

    rw = ReadWriteLock(zk, "/locks/table")
    with rw.read_lock: ...          # many at once
    with rw.write_lock: ...         # alone

A ReadWriteLock's holder of the write lock may also take its read lock
(downgrade: take read, release write). The reverse (upgrade) deadlocks, as in
Curator. Each lock is reentrant like ``Lock``; failure behaviour is the same.
"""

from __future__ import annotations

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.recipes._holders import LostCallback
from coordinator.recipes._nodes import default_identifier, encode_participant
from coordinator.recipes.lock import MutexCore, _AsyncMutex, _SyncMutex
from coordinator.recipes.predecessor import Blocker, immediate_predecessor, nearest_preceding

READ_PREFIX = "read-"
WRITE_PREFIX = "write-"
_PREFIXES = (READ_PREFIX, WRITE_PREFIX)


def _read_blocker(sibling: MutexCore | None) -> Blocker:
    """A reader waits for the nearest writer ahead, except its own ReadWriteLock's."""

    def is_sibling(child: str) -> bool:
        return (
            sibling is not None
            and sibling.node is not None
            and (sibling.node.rsplit("/", 1)[-1] == child)
        )

    return nearest_preceding(WRITE_PREFIX, is_sibling)


def _read_core(path: str, identifier: str) -> MutexCore:
    return MutexCore(
        path,
        READ_PREFIX,
        encode_participant(identifier),
        prefixes=_PREFIXES,
        blocker=_read_blocker(None),
    )


def _write_core(path: str, identifier: str) -> MutexCore:
    return MutexCore(
        path,
        WRITE_PREFIX,
        encode_participant(identifier),
        prefixes=_PREFIXES,
        blocker=immediate_predecessor,
    )


class ReadLock(_SyncMutex):
    """The shared side (kazoo's ``ReadLock``)."""

    _what = "read lock"

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.identifier = default_identifier() if identifier is None else identifier
        super().__init__(client, _read_core(path, self.identifier), on_lost)

    def __enter__(self) -> ReadLock:
        self.acquire()
        return self


class WriteLock(_SyncMutex):
    """The exclusive side (kazoo's ``WriteLock``)."""

    _what = "write lock"

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.identifier = default_identifier() if identifier is None else identifier
        super().__init__(client, _write_core(path, self.identifier), on_lost)

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self


class ReadWriteLock:
    """Both sides of one lock path (Curator's InterProcessReadWriteLock)."""

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.path = path
        self.write_lock = WriteLock(client, path, identifier, on_lost=on_lost)
        self.read_lock = ReadLock(client, path, identifier, on_lost=on_lost)
        self.read_lock._core.blocker = _read_blocker(self.write_lock._core)


class AsyncReadLock(_AsyncMutex):
    """The trio form of ``ReadLock``."""

    _what = "read lock"

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
        cancel_on_suspend: bool = True,
    ) -> None:
        self.identifier = default_identifier() if identifier is None else identifier
        super().__init__(client, _read_core(path, self.identifier), on_lost, cancel_on_suspend)

    async def __aenter__(self) -> AsyncReadLock:
        await super().__aenter__()
        return self


class AsyncWriteLock(_AsyncMutex):
    """The trio form of ``WriteLock``."""

    _what = "write lock"

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
        cancel_on_suspend: bool = True,
    ) -> None:
        self.identifier = default_identifier() if identifier is None else identifier
        super().__init__(client, _write_core(path, self.identifier), on_lost, cancel_on_suspend)

    async def __aenter__(self) -> AsyncWriteLock:
        await super().__aenter__()
        return self


class AsyncReadWriteLock:
    """The trio form of ``ReadWriteLock``."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
        cancel_on_suspend: bool = True,
    ) -> None:
        self.path = path
        self.write_lock = AsyncWriteLock(
            client, path, identifier, on_lost=on_lost, cancel_on_suspend=cancel_on_suspend
        )
        self.read_lock = AsyncReadLock(
            client, path, identifier, on_lost=on_lost, cancel_on_suspend=cancel_on_suspend
        )
        self.read_lock._core.blocker = _read_blocker(self.write_lock._core)
