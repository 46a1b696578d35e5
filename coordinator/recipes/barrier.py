"""Barrier and DoubleBarrier (ZooKeeper's barrier recipes; kazoo's Barrier and DoubleBarrier).

``Barrier``: a gate. While its node exists, ``wait()`` blocks; ``remove()``
opens it for every waiter at once.

    gate = Barrier(zk, "/barriers/deploy")
    gate.create()            # coordinator
    gate.wait(timeout=60)    # workers: True once removed
    gate.remove()            # coordinator

``DoubleBarrier``: ``num_clients`` participants enter together and leave
together. ``enter()`` returns once ``num_clients`` participants have arrived;
``leave()`` returns once every participant has left.

    with DoubleBarrier(zk, "/barriers/step", num_clients=4):
        compute()            # starts when all 4 are in; the block ends when all 4 are done

Each participant is an ephemeral node named by its id (default: a fresh uuid),
created exactly once despite connection loss (an existing node of our own
session is ours). The participant that completes the count creates
``<path>/ready``, which wakes every waiter (each waits on that one node). On
leaving, the participant with the lowest id waits for the highest, every other
one deletes its node and waits for the lowest; the last one also deletes
``ready``, so the path can be used for another round once everybody has left.

Failure behaviour: a participant whose session expires while waiting to enter
is re-created under the new session (it still counts once). A participant that
crashes is removed with its session: it no longer counts towards entering, and
the others' ``leave()`` completes without it. An ``enter`` that times out
withdraws its node — but if the count had already been reached with it, the
others have entered.
"""

from __future__ import annotations

import contextlib
import uuid
from types import TracebackType

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import NodeExistsError, NoNodeError
from coordinator.recipes._driver import cleanup_async, cleanup_sync, run_async, run_sync
from coordinator.recipes._ops import (
    RETRIABLE,
    Steps,
    Wait,
    budget,
    call,
    expired,
    join,
    session_id,
    watch_call,
)
from coordinator.recipes.errors import MemberExistsError, RecipeError
from coordinator.recipes.group import check_member_id, create_owned_ephemeral, delete_if_owned
from coordinator.recipes.protected import delete_quietly

READY = "ready"


class BarrierCore:
    """Sans-IO steps of a Barrier."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self) -> Steps[None]:
        deadline = yield from budget()
        try:
            yield from call("create", self.path, deadline=deadline, make_parents=True)
        except NodeExistsError:
            return

    def remove(self) -> Steps[bool]:
        deadline = yield from budget()
        try:
            yield from call("delete", self.path, deadline=deadline)
        except NoNodeError:
            return False
        return True

    def wait(self, timeout: float | None) -> Steps[bool]:
        deadline = yield from budget(timeout)
        try:
            while True:
                stat, waiter = yield from watch_call("exists", self.path, deadline=deadline)
                if stat is None:
                    return True
                if not (yield Wait(waiter, deadline)):
                    return False
        except RETRIABLE:
            if (yield from expired(deadline)):
                return False
            raise


class Barrier:
    """A gate that holds every waiter until it is removed (blocking client)."""

    def __init__(self, client: CoordinatorClient, path: str) -> None:
        self.client = client
        self.path = path
        self._core = BarrierCore(path)

    def create(self) -> None:
        """Close the gate (idempotent)."""
        run_sync(self.client, self._core.create())

    def remove(self) -> bool:
        """Open the gate; False if it was not closed."""
        return run_sync(self.client, self._core.remove())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the gate is open; False after ``timeout`` seconds."""
        return run_sync(self.client, self._core.wait(timeout))


class AsyncBarrier:
    """The trio form of ``Barrier``."""

    def __init__(self, client: AsyncCoordinatorClient, path: str) -> None:
        self.client = client
        self.path = path
        self._core = BarrierCore(path)

    async def create(self) -> None:
        await run_async(self.client, self._core.create())

    async def remove(self) -> bool:
        return await run_async(self.client, self._core.remove())

    async def wait(self, timeout: float | None = None) -> bool:
        return await run_async(self.client, self._core.wait(timeout))


class DoubleBarrierCore:
    """Sans-IO steps of one DoubleBarrier participant."""

    def __init__(self, path: str, num_clients: int, member_id: str, data: bytes) -> None:
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
            raise ValueError(f"num_clients must be a positive int, got {num_clients!r}")
        if check_member_id(member_id) == READY:
            raise ValueError(f"{READY!r} is reserved; choose another participant id")
        self.path = path
        self.num_clients = num_clients
        self.member_id = member_id
        self.node = join(path, member_id)
        self.ready = join(path, READY)
        self.data = data
        self.session = 0
        self.participating = False

    def _clash(self, node: str) -> Exception:
        return MemberExistsError(
            f"{node}: participant id {self.member_id!r} is taken by another session"
        )

    def _ensure_node(self, deadline: float | None) -> Steps[None]:
        if self.participating and (yield from session_id()) == self.session:
            return
        self.session = yield from create_owned_ephemeral(
            self.node, self.data, deadline, self._clash
        )
        self.participating = True

    def enter(self, timeout: float | None) -> Steps[bool]:
        deadline = yield from budget(timeout)
        try:
            while True:
                # Watch "ready" before counting, so its creation cannot slip between.
                ready, waiter = yield from watch_call("exists", self.ready, deadline=deadline)
                yield from self._ensure_node(deadline)
                if ready is not None:
                    return True
                children: list[str] = yield from call("get_children", self.path, deadline=deadline)
                arrived = [c for c in children if c != READY]
                if self.member_id in arrived and len(arrived) >= self.num_clients:
                    with contextlib.suppress(NodeExistsError):
                        yield from call("create", self.ready, deadline=deadline)
                    return True
                if not (yield Wait(waiter, deadline)):
                    return False
        except RETRIABLE:
            if (yield from expired(deadline)):
                return False
            raise

    def withdraw(self, timeout: float) -> Steps[None]:
        """Remove our node (after an enter that timed out or failed)."""
        self.participating = False
        deadline = yield from budget(timeout)
        yield from delete_if_owned(self.node, self.session, deadline)

    def leave(self, timeout: float | None) -> Steps[bool]:
        deadline = yield from budget(timeout)
        deleted = False
        try:
            while True:
                try:
                    children: list[str] = yield from call(
                        "get_children", self.path, deadline=deadline
                    )
                except NoNodeError:
                    children = []
                remaining = sorted(c for c in children if c != READY)
                if not remaining:
                    self.participating = False
                    return True
                if remaining == [self.member_id] and not deleted:
                    # The last one: clear "ready" for the next round, then go.
                    yield from delete_quietly(self.ready, deadline=deadline)
                    yield from delete_if_owned(self.node, self.session, deadline)
                    deleted = True
                    continue
                lowest, highest = remaining[0], remaining[-1]
                if lowest == self.member_id and not deleted:
                    target = highest
                else:
                    if self.member_id in remaining and not deleted:
                        yield from delete_if_owned(self.node, self.session, deadline)
                        deleted = True
                    target = lowest
                stat, waiter = yield from watch_call(
                    "exists", join(self.path, target), deadline=deadline
                )
                if stat is None:
                    continue
                if not (yield Wait(waiter, deadline)):
                    return False
        except RETRIABLE:
            if (yield from expired(deadline)):
                return False
            raise


class DoubleBarrier:
    """Enter together, leave together (blocking client)."""

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        num_clients: int,
        identifier: str | None = None,
        data: bytes = b"",
    ) -> None:
        self.client = client
        self.path = path
        self._core = DoubleBarrierCore(
            path, num_clients, uuid.uuid4().hex if identifier is None else identifier, data
        )
        self.identifier = self._core.member_id

    @property
    def participating(self) -> bool:
        return self._core.participating

    def enter(self, timeout: float | None = None) -> bool:
        """Arrive; True once ``num_clients`` have arrived, False after ``timeout``
        seconds (our node is withdrawn again)."""
        try:
            entered = run_sync(self.client, self._core.enter(timeout))
        except BaseException:
            self._withdraw()
            raise
        if not entered:
            self._withdraw()
        return entered

    def _withdraw(self) -> None:
        cleanup_sync(
            self.client,
            self._core.withdraw,
            f"withdrawing from {self.path}",
            self._core.session or None,
        )

    def leave(self, timeout: float | None = None) -> bool:
        """Depart; True once every participant has left, False after ``timeout``."""
        return run_sync(self.client, self._core.leave(timeout))

    def __enter__(self) -> DoubleBarrier:
        self.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.leave() and exc_type is None:
            raise RecipeError(f"{self.path}: leaving the barrier failed")


class AsyncDoubleBarrier:
    """The trio form of ``DoubleBarrier``."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        num_clients: int,
        identifier: str | None = None,
        data: bytes = b"",
    ) -> None:
        self.client = client
        self.path = path
        self._core = DoubleBarrierCore(
            path, num_clients, uuid.uuid4().hex if identifier is None else identifier, data
        )
        self.identifier = self._core.member_id

    @property
    def participating(self) -> bool:
        return self._core.participating

    async def enter(self, timeout: float | None = None) -> bool:
        try:
            entered = await run_async(self.client, self._core.enter(timeout))
        except BaseException:
            await self._withdraw()
            raise
        if not entered:
            await self._withdraw()
        return entered

    async def _withdraw(self) -> None:
        await cleanup_async(
            self.client,
            self._core.withdraw,
            f"withdrawing from {self.path}",
            self._core.session or None,
        )

    async def leave(self, timeout: float | None = None) -> bool:
        return await run_async(self.client, self._core.leave(timeout))

    async def __aenter__(self) -> AsyncDoubleBarrier:
        await self.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not await self.leave() and exc_type is None:
            raise RecipeError(f"{self.path}: leaving the barrier failed")
