"""Lock: fair (FIFO) distributed mutual exclusion — ZooKeeper's lock recipe.

Each contender creates a protected ephemeral-sequential node under the lock's
path and holds the lock when its node is the lowest; otherwise it watches only
the node just before its own (no herd). The node lives exactly as long as the
holder's session, so a crashed holder releases the lock when its session
expires.

    lock = Lock(zk, "/locks/report", identifier="worker-1")
    with lock:                      # blocks until held
        ...
    if lock.acquire(timeout=5):     # False after 5 s (our node is removed again)
        try: ...
        finally: lock.release()

Reentrant: the thread (or trio task) holding a Lock object may acquire it again;
each acquire needs a release. Other threads (tasks) using the same object wait
for it locally first, so one object never has two nodes in the queue.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import trio

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import NoNodeError
from coordinator.recipes._driver import (
    async_monitor,
    cleanup_async,
    cleanup_sync,
    run_async,
    run_sync,
    sync_monitor,
)
from coordinator.recipes._holders import AsyncHold, LostCallback, SyncHold
from coordinator.recipes._nodes import (
    Participant,
    decode_participant,
    default_identifier,
    encode_participant,
)
from coordinator.recipes._ops import (
    RETRIABLE,
    Steps,
    basename,
    budget,
    call,
    expired,
    join,
    session_id,
)
from coordinator.recipes.errors import AcquireCancelledError, LockLostError, NotHeldError
from coordinator.recipes.holding import HoldState
from coordinator.recipes.predecessor import Blocker, immediate_predecessor, wait_for_turn
from coordinator.recipes.protected import (
    delete_owned,
    in_sequence_order,
    new_guid,
    protected_create,
)

LOCK_PREFIX = "lock-"


class MutexCore:
    """Sans-IO steps of one contender in a queue of ephemeral-sequential nodes.

    ``prefix`` names our node; ``prefixes`` are the node kinds that form the
    queue; ``blocker`` says which earlier node we must wait for (the immediate
    predecessor for a mutex).
    """

    def __init__(
        self,
        path: str,
        prefix: str,
        data: bytes,
        *,
        prefixes: tuple[str, ...] | None = None,
        blocker: Blocker = immediate_predecessor,
    ) -> None:
        self.path = path
        self.prefix = prefix
        self.data = data
        self.prefixes = prefixes or (prefix,)
        self.blocker = blocker
        self.node: str | None = None
        self.session = 0
        self.guid = ""
        self.cancelled = False

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise AcquireCancelledError(f"acquiring {self.path} was cancelled")

    def acquire(self, blocking: bool, timeout: float | None) -> Steps[bool]:
        """Join the queue and wait for our turn; True once it came, False at the
        timeout (or at once, not ``blocking``). Leaves ``node`` set on False:
        the caller abandons it."""
        deadline = yield from budget(timeout)
        acquired: bool = yield from self.acquire_until(blocking, deadline)
        return acquired

    def acquire_until(self, blocking: bool, deadline: float | None) -> Steps[bool]:
        """``acquire`` with an absolute deadline from the driver."""
        self.guid = new_guid()
        self.node = None
        self.session = 0
        try:
            while True:
                self.check_cancelled()
                if self.node is None:
                    self.node, self.session = yield from protected_create(
                        self.path,
                        self.prefix,
                        self.data,
                        guid=self.guid,
                        ephemeral=True,
                        sequential=True,
                        deadline=deadline,
                    )
                outcome = yield from wait_for_turn(
                    self.path,
                    basename(self.node),
                    self.prefixes,
                    self.blocker,
                    blocking=blocking,
                    deadline=deadline,
                    check_cancelled=self.check_cancelled,
                )
                if outcome is None or (yield from session_id()) != self.session:
                    self.node = None  # our session (and node) is gone: queue up again
                    continue
                return outcome
        except RETRIABLE:
            if (yield from expired(deadline)):
                return False
            raise

    def take(self) -> tuple[str | None, str, int]:
        """Forget our node (for a release or an abandon): ``(node, guid, session)``."""
        taken = (self.node, self.guid, self.session)
        self.node = None
        return taken

    def contenders(self) -> Steps[list[Participant]]:
        """The queue in order (the holder first)."""
        deadline = yield from budget()
        try:
            children: list[str] = yield from call("get_children", self.path, deadline=deadline)
        except NoNodeError:
            return []
        out: list[Participant] = []
        for child in in_sequence_order(children, self.prefixes):
            try:
                data, _stat = yield from call("get", join(self.path, child), deadline=deadline)
            except NoNodeError:
                continue
            out.append(decode_participant(child, data))
        return out


def release_steps(
    path: str, node: str | None, guid: str, search: bool
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Arguments of ``delete_owned`` for dropping a contender's node."""
    return path, (guid,) if search and guid else (), (node,) if node else ()


class _SyncMutex:
    """The blocking shell of a MutexCore: reentrancy, local queueing, hold tracking."""

    _what = "lock"

    def __init__(
        self, client: CoordinatorClient, core: MutexCore, on_lost: LostCallback | None
    ) -> None:
        self.client = client
        self.path = core.path
        self._core = core
        self._hold = SyncHold(client, on_lost, f"{self._what} {core.path}")
        self._gate = threading.Semaphore(1)
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._count = 0

    @property
    def is_acquired(self) -> bool:
        """Held, and known to be held (False while suspended and after a loss)."""
        return self._count > 0 and self._hold.is_held

    @property
    def state(self) -> HoldState:
        """RELEASED, HELD, SUSPENDED (may have been lost) or LOST."""
        return self._hold.state

    @property
    def node(self) -> str | None:
        """Our node's path while acquiring or holding."""
        return self._core.node

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Wait for the lock; True once held, False after ``timeout`` seconds (or
        at once if not ``blocking`` and it is taken). Through connection loss it
        keeps trying until the timeout (without one: until it succeeds). Raises
        AcquireCancelledError after ``cancel()``."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me and self._count > 0:
                if self._hold.state is HoldState.LOST:
                    raise LockLostError(
                        f"{self.path}: the lock was lost; release it first", HoldState.LOST
                    )
                self._count += 1
                return True
        start = time.monotonic()
        got = (
            self._gate.acquire(blocking=False)
            if not blocking
            else self._gate.acquire(timeout=timeout)
        )
        if not got:
            return False
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        self._core.cancelled = False
        try:
            acquired = run_sync(self.client, self._core.acquire(blocking, remaining))
        except BaseException:
            self._abandon()
            self._gate.release()
            raise
        if not acquired:
            self._abandon()
            self._gate.release()
            return False
        with self._mutex:
            self._owner = me
            self._count = 1
        self._hold.acquired(self._core.session)
        return True

    def release(self) -> None:
        """Release one level of the lock; the node is deleted at the last one
        (in the background if the coordinator is unreachable right now — the node
        then goes at the latest with the session)."""
        with self._mutex:
            if self._count == 0:
                raise NotHeldError(f"{self.path}: release of a lock that is not held")
            self._count -= 1
            if self._count > 0:
                return
            self._owner = None
        self._hold.released()
        node, guid, session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=False)
        cleanup_sync(
            self.client,
            lambda t: delete_owned(parent, guids, known, t),
            f"releasing {node}",
            session,
        )
        self._gate.release()

    def cancel(self) -> None:
        """End a pending ``acquire`` in another thread (it raises AcquireCancelledError)."""
        self._core.cancelled = True
        sync_monitor(self.client).wake_all()

    def contenders(self) -> list[str]:
        """The identifiers of the holder and the waiters, in queue order."""
        return [p.identifier for p in run_sync(self.client, self._core.contenders())]

    def participants(self) -> list[Participant]:
        """The holder and the waiters (node name, identifier, data), in queue order."""
        return run_sync(self.client, self._core.contenders())

    def _abandon(self) -> None:
        node, guid, _session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=True)
        cleanup_sync(
            self.client,
            lambda t: delete_owned(parent, guids, known, t),
            f"abandoning {self._what} {self.path}",
        )

    def __enter__(self) -> _SyncMutex:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lost = self._hold.state is HoldState.LOST
        self.release()
        if lost and exc_type is None:
            raise LockLostError(
                f"{self.path}: the session expired while the lock was held", HoldState.LOST
            )


class _AsyncMutex:
    """The trio shell of a MutexCore.

    ``async with lock:`` runs its body in a cancel scope that is cancelled when
    the lock is lost (and, with ``cancel_on_suspend``, when the connection is
    suspended); the block then raises LockLostError.
    """

    _what = "lock"

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        core: MutexCore,
        on_lost: LostCallback | None,
        cancel_on_suspend: bool,
    ) -> None:
        self.client = client
        self.path = core.path
        self._core = core
        self._hold = AsyncHold(client, on_lost, f"{self._what} {core.path}", cancel_on_suspend)
        self._gate = trio.Semaphore(1)
        self._owner: object | None = None
        self._count = 0

    @property
    def is_acquired(self) -> bool:
        """Held, and known to be held (False while suspended and after a loss)."""
        return self._count > 0 and self._hold.is_held

    @property
    def state(self) -> HoldState:
        return self._hold.state

    @property
    def node(self) -> str | None:
        return self._core.node

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """As ``Lock.acquire``; cancelling the calling task also removes our node."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        me = trio.lowlevel.current_task()
        if self._owner is me and self._count > 0:
            if self._hold.state is HoldState.LOST:
                raise LockLostError(
                    f"{self.path}: the lock was lost; release it first", HoldState.LOST
                )
            self._count += 1
            await trio.lowlevel.checkpoint()
            return True
        start = trio.current_time()
        if not blocking:
            try:
                self._gate.acquire_nowait()
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()
                return False
        else:
            got = False
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await self._gate.acquire()
                got = True
            if not got:
                return False
        remaining = None if timeout is None else max(0.0, timeout - (trio.current_time() - start))
        self._core.cancelled = False
        try:
            acquired = await run_async(self.client, self._core.acquire(blocking, remaining))
        except BaseException:
            await self._abandon()
            self._gate.release()
            raise
        if not acquired:
            await self._abandon()
            self._gate.release()
            return False
        self._owner = me
        self._count = 1
        self._hold.acquired(self._core.session)
        return True

    async def release(self) -> None:
        """Release one level; the node is deleted at the last one (shielded from
        cancellation; in the background if the coordinator is unreachable)."""
        if self._count == 0:
            raise NotHeldError(f"{self.path}: release of a lock that is not held")
        self._count -= 1
        if self._count > 0:
            await trio.lowlevel.checkpoint()
            return
        self._owner = None
        self._hold.released()
        node, guid, session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=False)
        try:
            await cleanup_async(
                self.client,
                lambda t: delete_owned(parent, guids, known, t),
                f"releasing {node}",
                session,
            )
        finally:
            self._gate.release()

    def cancel(self) -> None:
        """End a pending ``acquire`` in another task (it raises AcquireCancelledError)."""
        self._core.cancelled = True
        async_monitor(self.client).wake_all()

    async def contenders(self) -> list[str]:
        return [p.identifier for p in await run_async(self.client, self._core.contenders())]

    async def participants(self) -> list[Participant]:
        return await run_async(self.client, self._core.contenders())

    async def _abandon(self) -> None:
        node, guid, _session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=True)
        await cleanup_async(
            self.client,
            lambda t: delete_owned(parent, guids, known, t),
            f"abandoning {self._what} {self.path}",
        )

    async def __aenter__(self) -> _AsyncMutex:
        await self.acquire()
        self._hold.enter_block()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        swallowed, lost = self._hold.exit_block(exc_type, exc, tb)
        await self.release()
        if lost is not None:
            raise LockLostError(f"{self.path}: the lock was {lost.value} while held", lost)
        return swallowed


class Lock(_SyncMutex):
    """A fair, reentrant distributed lock (kazoo's ``Lock``, Curator's
    InterProcessMutex) for the blocking client.

    ``on_lost(state)`` is called (on the client's callback thread) when the
    connection is suspended (SUSPENDED: the lock may be lost) and when the
    session is lost (LOST: it is). ``is_acquired`` is False in both cases, and
    a ``with`` block that ends after a loss raises LockLostError.
    """

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        identifier: str | None = None,
        *,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.identifier = default_identifier() if identifier is None else identifier
        core = MutexCore(path, LOCK_PREFIX, encode_participant(self.identifier))
        super().__init__(client, core, on_lost)

    def __enter__(self) -> Lock:
        self.acquire()
        return self


class AsyncLock(_AsyncMutex):
    """The trio form of ``Lock``: ``async with AsyncLock(zk, path):``.

    The body is cancelled when the lock is lost, or when the connection is
    suspended unless ``cancel_on_suspend=False``; the block then raises
    LockLostError. Acquiring and releasing must happen in the same trio run.
    """

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
        core = MutexCore(path, LOCK_PREFIX, encode_participant(self.identifier))
        super().__init__(client, core, on_lost, cancel_on_suspend)

    async def __aenter__(self) -> AsyncLock:
        await super().__aenter__()
        return self
