"""Semaphore: at most ``max_leases`` holders at once (Curator's InterProcessSemaphoreV2).

Layout under the semaphore's path::

    <path>              data: max_leases, ASCII decimal (shared by every participant)
    <path>/locks/       an internal fair Lock that orders acquirers
    <path>/leases/      one protected ephemeral-sequential node per lease held

An acquirer first takes the internal lock (waiting, like any Lock contender,
only on its predecessor), then creates its lease node(s) and counts the lease
nodes: if there are at most ``max_leases`` it has them; otherwise it waits —
and, being the internal lock's holder, it is the only participant watching the
lease set and the max (no herd). Then it releases the internal lock.
Creating before counting keeps the bound safe even if two acquirers ever
believed they held the internal lock at once: each counts the other's node.

A lease is an ephemeral node: it is released by ``release()`` or when the
holder's session ends, so a crashed holder's leases come back after its session
timeout.

``max_leases`` is stored in the coordinator so every participant agrees. The
first participant to acquire with an explicit ``max_leases`` stores it. A
participant constructed with a different explicit value gets
MaxLeasesMismatchError at its first acquire (a clear error rather than a silent
disagreement); one constructed with ``max_leases=None`` adopts whatever is
stored. ``set_max_leases(n)`` changes the stored value for everyone: it applies
to acquisitions from then on (holders keep their leases; a lowered maximum only
stops new grants until enough are released).

    sem = Semaphore(zk, "/sem/reports", max_leases=5)
    with sem:                   # one of at most 5 holders across all processes
        run_report()
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import trio

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import BadVersionError, NodeExistsError, NoNodeError
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
    Wait,
    basename,
    budget,
    call,
    expired,
    join,
    session_id,
    watch_call,
)
from coordinator.recipes.errors import (
    LockLostError,
    MaxLeasesMismatchError,
    NotHeldError,
    RecipeError,
    SemaphoreNotInitializedError,
)
from coordinator.recipes.holding import HoldState
from coordinator.recipes.lock import LOCK_PREFIX, MutexCore
from coordinator.recipes.protected import (
    delete_owned,
    in_sequence_order,
    new_guid,
    protected_create,
)

LEASE_PREFIX = "lease-"


def encode_max(value: int) -> bytes:
    return str(value).encode("ascii")


def parse_max(path: str, data: bytes) -> int | None:
    """The stored max_leases; None when the node has no data yet."""
    if not data:
        return None
    text = data.decode("ascii", "replace")
    if not text.isdigit() or int(text) < 1:
        raise RecipeError(f"{path} holds {data!r}, which is not a semaphore's max_leases")
    return int(text)


def _check_max(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_leases must be a positive int, got {value!r}")
    return value


class SemaphoreCore:
    """Sans-IO steps of one semaphore participant."""

    def __init__(self, path: str, max_leases: int | None, data: bytes) -> None:
        self.path = path
        self.leases_path = join(path, "leases")
        self.mutex = MutexCore(join(path, "locks"), LOCK_PREFIX, data)
        self.requested = None if max_leases is None else _check_max(max_leases)
        self.max_leases: int | None = None
        self.joined = False
        self.data = data
        self.held: list[str] = []
        self.held_session = 0
        self.pending: list[str] = []
        self.guids: list[str] = []

    def stored_max(self, deadline: float | None) -> Steps[int]:
        """Read (and on first use store, or check) the shared max_leases."""
        while True:
            try:
                data, stat = yield from call("get", self.path, deadline=deadline)
            except NoNodeError:
                if self.requested is None:
                    raise SemaphoreNotInitializedError(
                        f"semaphore {self.path} does not exist; give max_leases to create it"
                    ) from None
                try:
                    yield from call(
                        "create",
                        self.path,
                        deadline=deadline,
                        data=encode_max(self.requested),
                        make_parents=True,
                    )
                except NodeExistsError:
                    continue
                return self._joined(self.requested)
            value = parse_max(self.path, data)
            if value is None:
                # The path exists without a maximum (created as a parent): store ours.
                if self.requested is None:
                    raise SemaphoreNotInitializedError(
                        f"semaphore {self.path} has no max_leases; give one to set it"
                    )
                try:
                    yield from call(
                        "set",
                        self.path,
                        encode_max(self.requested),
                        deadline=deadline,
                        version=stat.version,
                    )
                except BadVersionError:
                    continue
                return self._joined(self.requested)
            if not self.joined and self.requested is not None and value != self.requested:
                raise MaxLeasesMismatchError(self.path, value, self.requested)
            return self._joined(value)

    def _joined(self, value: int) -> int:
        self.joined = True
        self.max_leases = value
        return value

    def set_max(self, value: int) -> Steps[None]:
        """Store a new max_leases for every participant."""
        _check_max(value)
        deadline = yield from budget()
        while True:
            try:
                yield from call("set", self.path, encode_max(value), deadline=deadline)
                break
            except NoNodeError:
                try:
                    yield from call(
                        "create",
                        self.path,
                        deadline=deadline,
                        data=encode_max(value),
                        make_parents=True,
                    )
                    break
                except NodeExistsError:
                    continue
        self.requested = value
        self._joined(value)

    def read_max(self) -> Steps[int]:
        deadline = yield from budget()
        value: int = yield from self.stored_max(deadline)
        return value

    def acquire(self, count: int, blocking: bool, timeout: float | None) -> Steps[bool]:
        """Get ``count`` more leases; True once granted, False at the timeout. The
        caller then releases the internal lock and, on False, abandons ``pending``."""
        deadline = yield from budget(timeout)
        self.pending = []
        self.guids = []
        try:
            maximum = yield from self.stored_max(deadline)
            if count > maximum:
                raise ValueError(f"cannot acquire {count} leases of a semaphore of {maximum}")
            if not (yield from self.mutex.acquire_until(blocking, deadline)):
                return False
            while True:
                self.mutex.check_cancelled()
                if (yield from session_id()) != self.mutex.session:
                    # Our session ended: the internal lock and pending leases with it.
                    self.pending = []
                    if not (yield from self.mutex.acquire_until(blocking, deadline)):
                        return False
                    continue
                while len(self.pending) < count:
                    guid = new_guid()
                    self.guids.append(guid)
                    node, _session = yield from protected_create(
                        self.leases_path,
                        LEASE_PREFIX,
                        self.data,
                        guid=guid,
                        ephemeral=True,
                        sequential=True,
                        deadline=deadline,
                    )
                    self.pending.append(node)
                children, waiter = yield from watch_call(
                    "get_children", self.leases_path, deadline=deadline
                )
                leases = in_sequence_order(children, (LEASE_PREFIX,))
                present = [p for p in self.pending if basename(p) in leases]
                if len(present) < len(self.pending):
                    self.pending = present  # lost with an old session: create again
                    continue
                (data, _stat), waiter = yield from watch_call(
                    "get", self.path, deadline=deadline, waiter=waiter
                )
                maximum = parse_max(self.path, data) or maximum
                self.max_leases = maximum
                if len(leases) <= maximum:
                    self.held.extend(self.pending)
                    self.held_session = self.mutex.session
                    self.pending = []
                    return True
                if not blocking:
                    return False
                self.mutex.check_cancelled()
                if not (yield Wait(waiter, deadline)):
                    return False
        except RETRIABLE:
            if (yield from expired(deadline)):
                return False
            raise

    def take_pending(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Forget this attempt's ungranted leases: ``(guids, known paths)``."""
        taken = tuple(self.guids), tuple(self.pending)
        self.guids = []
        self.pending = []
        return taken

    def take_held(self, count: int | None) -> tuple[str, ...]:
        """Forget ``count`` held leases (all with None), newest first."""
        n = len(self.held) if count is None else count
        if n < 0 or n > len(self.held):
            raise NotHeldError(f"{self.path}: cannot release {n} of {len(self.held)} leases")
        taken = tuple(self.held[len(self.held) - n :])
        del self.held[len(self.held) - n :]
        return taken

    def holders(self) -> Steps[list[Participant]]:
        deadline = yield from budget()
        try:
            children: list[str] = yield from call(
                "get_children", self.leases_path, deadline=deadline
            )
        except NoNodeError:
            return []
        out: list[Participant] = []
        for child in in_sequence_order(children, (LEASE_PREFIX,)):
            try:
                data, _stat = yield from call(
                    "get", join(self.leases_path, child), deadline=deadline
                )
            except NoNodeError:
                continue
            out.append(decode_participant(child, data))
        return out


class Semaphore:
    """A distributed counting semaphore for the blocking client (kazoo's
    ``Semaphore``, Curator's InterProcessSemaphoreV2).

    ``acquire(count=n)`` takes several leases at once (all or none). The leases
    belong to this object; ``release()`` gives back one (``count``) or all.
    ``on_lost`` and ``is_acquired`` behave as for ``Lock``.
    """

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        max_leases: int | None = None,
        identifier: str | None = None,
        *,
        data: bytes = b"",
        on_lost: LostCallback | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.identifier = default_identifier() if identifier is None else identifier
        self._core = SemaphoreCore(path, max_leases, encode_participant(self.identifier, data))
        self._hold = SyncHold(client, on_lost, f"semaphore {path}")
        self._acquiring = threading.Lock()
        self._mutex = threading.Lock()

    @property
    def max_leases(self) -> int | None:
        """The stored maximum as last seen (None before the first acquire)."""
        return self._core.max_leases

    @property
    def leases(self) -> int:
        """How many leases this object holds."""
        return len(self._core.held)

    @property
    def is_acquired(self) -> bool:
        return bool(self._core.held) and self._hold.is_held

    @property
    def state(self) -> HoldState:
        return self._hold.state

    def acquire(self, blocking: bool = True, timeout: float | None = None, count: int = 1) -> bool:
        """Take ``count`` leases; True once granted, False after ``timeout`` seconds
        (or at once if not ``blocking`` and none is free)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        start = time.monotonic()
        got = (
            self._acquiring.acquire(blocking=False)
            if not blocking
            else self._acquiring.acquire(timeout=-1 if timeout is None else timeout)
        )
        if not got:
            return False
        try:
            if self._hold.state is HoldState.LOST:
                self._forget_lost()
            remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            self._core.mutex.cancelled = False
            try:
                acquired = run_sync(self.client, self._core.acquire(count, blocking, remaining))
            except BaseException:
                self._finish(granted=False)
                raise
            self._finish(granted=acquired)
            return acquired
        finally:
            self._acquiring.release()

    def _finish(self, granted: bool) -> None:
        node, guid, session = self._core.mutex.take()
        mutex_path = self._core.mutex.path
        cleanup_sync(
            self.client,
            lambda t: delete_owned(mutex_path, (guid,) if guid else (), (node,) if node else (), t),
            f"releasing the internal lock of {self.path}",
            session if node else None,
        )
        guids, pending = self._core.take_pending()
        if not granted:
            leases = self._core.leases_path
            cleanup_sync(
                self.client,
                lambda t: delete_owned(leases, guids, pending, t),
                f"abandoning leases of {self.path}",
            )
        elif self._hold.state is HoldState.RELEASED:
            self._hold.acquired(self._core.held_session)

    def _forget_lost(self) -> None:
        self._core.take_held(None)  # gone with the session
        self._hold.released()

    def release(self, count: int | None = None) -> None:
        """Give back ``count`` leases (all with None); raises NotHeldError if this
        object holds fewer."""
        with self._mutex:
            if not self._core.held:
                raise NotHeldError(f"{self.path}: no lease is held")
            session = self._core.held_session
            taken = self._core.take_held(count)
            if not self._core.held:
                self._hold.released()
        leases = self._core.leases_path
        cleanup_sync(
            self.client,
            lambda t: delete_owned(leases, (), taken, t),
            f"releasing leases of {self.path}",
            session,
        )

    def cancel(self) -> None:
        """End a pending ``acquire`` in another thread (AcquireCancelledError)."""
        self._core.mutex.cancelled = True
        sync_monitor(self.client).wake_all()

    def set_max_leases(self, max_leases: int) -> None:
        """Change the shared maximum; it applies to acquisitions from now on."""
        run_sync(self.client, self._core.set_max(max_leases))

    def get_max_leases(self) -> int:
        """Read the shared maximum from the coordinator."""
        return run_sync(self.client, self._core.read_max())

    def lease_holders(self) -> list[str]:
        """The identifiers of the current lease holders (one entry per lease)."""
        return [p.identifier for p in run_sync(self.client, self._core.holders())]

    def participants(self) -> list[Participant]:
        return run_sync(self.client, self._core.holders())

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lost = self._hold.state is HoldState.LOST
        self.release(1)
        if lost and exc_type is None:
            raise LockLostError(
                f"{self.path}: the session expired while the lease was held", HoldState.LOST
            )


class AsyncSemaphore:
    """The trio form of ``Semaphore``; ``async with sem:`` cancels its body when
    the lease is lost (or suspended, unless ``cancel_on_suspend=False``) and
    then raises LockLostError."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        max_leases: int | None = None,
        identifier: str | None = None,
        *,
        data: bytes = b"",
        on_lost: LostCallback | None = None,
        cancel_on_suspend: bool = True,
    ) -> None:
        self.client = client
        self.path = path
        self.identifier = default_identifier() if identifier is None else identifier
        self._core = SemaphoreCore(path, max_leases, encode_participant(self.identifier, data))
        self._hold = AsyncHold(client, on_lost, f"semaphore {path}", cancel_on_suspend)
        self._acquiring = trio.Lock()

    @property
    def max_leases(self) -> int | None:
        return self._core.max_leases

    @property
    def leases(self) -> int:
        return len(self._core.held)

    @property
    def is_acquired(self) -> bool:
        return bool(self._core.held) and self._hold.is_held

    @property
    def state(self) -> HoldState:
        return self._hold.state

    async def acquire(
        self, blocking: bool = True, timeout: float | None = None, count: int = 1
    ) -> bool:
        """As ``Semaphore.acquire``; cancelling the caller also removes its nodes."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        start = trio.current_time()
        if not blocking:
            try:
                self._acquiring.acquire_nowait()
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()
                return False
        else:
            got = False
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await self._acquiring.acquire()
                got = True
            if not got:
                return False
        try:
            if self._hold.state is HoldState.LOST:
                self._core.take_held(None)
                self._hold.released()
            remaining = (
                None if timeout is None else max(0.0, timeout - (trio.current_time() - start))
            )
            self._core.mutex.cancelled = False
            try:
                acquired = await run_async(
                    self.client, self._core.acquire(count, blocking, remaining)
                )
            except BaseException:
                await self._finish(granted=False)
                raise
            await self._finish(granted=acquired)
            return acquired
        finally:
            self._acquiring.release()

    async def _finish(self, granted: bool) -> None:
        node, guid, session = self._core.mutex.take()
        mutex_path = self._core.mutex.path
        await cleanup_async(
            self.client,
            lambda t: delete_owned(mutex_path, (guid,) if guid else (), (node,) if node else (), t),
            f"releasing the internal lock of {self.path}",
            session if node else None,
        )
        guids, pending = self._core.take_pending()
        if not granted:
            leases = self._core.leases_path
            await cleanup_async(
                self.client,
                lambda t: delete_owned(leases, guids, pending, t),
                f"abandoning leases of {self.path}",
            )
        elif self._hold.state is HoldState.RELEASED:
            self._hold.acquired(self._core.held_session)

    async def release(self, count: int | None = None) -> None:
        if not self._core.held:
            raise NotHeldError(f"{self.path}: no lease is held")
        session = self._core.held_session
        taken = self._core.take_held(count)
        if not self._core.held:
            self._hold.released()
        leases = self._core.leases_path
        await cleanup_async(
            self.client,
            lambda t: delete_owned(leases, (), taken, t),
            f"releasing leases of {self.path}",
            session,
        )

    def cancel(self) -> None:
        self._core.mutex.cancelled = True
        async_monitor(self.client).wake_all()

    async def set_max_leases(self, max_leases: int) -> None:
        await run_async(self.client, self._core.set_max(max_leases))

    async def get_max_leases(self) -> int:
        return await run_async(self.client, self._core.read_max())

    async def lease_holders(self) -> list[str]:
        return [p.identifier for p in await run_async(self.client, self._core.holders())]

    async def participants(self) -> list[Participant]:
        return await run_async(self.client, self._core.holders())

    async def __aenter__(self) -> AsyncSemaphore:
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
        await self.release(1)
        if lost is not None:
            raise LockLostError(f"{self.path}: the lease was {lost.value} while held", lost)
        return swallowed
