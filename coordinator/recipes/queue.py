"""Queue: a distributed FIFO queue of byte strings (ZooKeeper's queue recipe).

Each item is a persistent sequential node ``<path>/_c_<guid>-item-<seq>``;
the sequence number gives the order. ``put`` is a protected create, so an
item whose create was answered by a lost connection is neither lost nor
enqueued twice. ``put_all`` enqueues several items atomically (one
transaction), in order.

``get`` takes the oldest item: it reads the item and then, in one transaction,
deletes it and creates a claim marker ``<path>/claims/<random id>``. Only one
consumer's transaction can delete an item, so every item is delivered to at
most one consumer; and if the connection drops before the answer, the
consumer looks for its claim marker to learn whether the item is its own —
so an item is never lost between the server and a live consumer, either. The
marker is deleted right after (and is a TTL node, removed by the server after
``CLAIM_TTL`` if its consumer died first). An item taken by a consumer that
then crashes is gone with it (at-most-once delivery, like kazoo's Queue).

A blocking ``get`` waits on a watch of the queue's children. Every waiting
consumer is woken by a put (the queue is a shared resource; for one item only
one of them wins the transaction, the others wait again).

    q = Queue(zk, "/queues/jobs")
    q.put(b"job-1")
    job = q.get(timeout=5)          # None if nothing arrived within 5 s
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import NodeExistsError, NoNodeError
from coordinator.recipes._driver import run_async, run_sync
from coordinator.recipes._ops import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    RETRIABLE,
    Sleep,
    Steps,
    Transact,
    Wait,
    budget,
    call,
    expired,
    join,
    watch_call,
)
from coordinator.recipes.protected import (
    in_sequence_order,
    new_guid,
    owned,
    protected_create,
    protected_name,
)

ITEM_PREFIX = "item-"
CLAIMS = "claims"
CLAIM_TTL = 3600.0
_CLAIM_DELETE_BUDGET = 5.0
_CLAIM_DELETE_ERRORS: tuple[type[Exception], ...] = (NoNodeError, *RETRIABLE)


def _check_value(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"a queue item must be bytes, got {type(value).__name__}")
    return value


class QueueCore:
    """Sans-IO steps of a queue."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.claims = join(path, CLAIMS)
        self._claims_ready = False

    def put(self, value: bytes) -> Steps[str]:
        _check_value(value)
        deadline = yield from budget()
        node, _session = yield from protected_create(
            self.path,
            ITEM_PREFIX,
            value,
            guid=new_guid(),
            ephemeral=False,
            sequential=True,
            deadline=deadline,
        )
        return node

    def put_all(self, values: Sequence[bytes]) -> Steps[None]:
        items = [_check_value(v) for v in values]
        if not items:
            return
        guid = new_guid()
        name = join(self.path, protected_name(guid, ITEM_PREFIX))
        ops = tuple(
            ("create", (name,), {"data": v, "sequential": True, "make_parents": True})
            for v in items
        )
        deadline = yield from budget()
        backoff = FIRST_BACKOFF
        while True:
            try:
                results = yield Transact(ops)
            except RETRIABLE as exc:
                # All or nothing was applied: our guid tells which.
                try:
                    children: list[str] = yield from call(
                        "get_children", self.path, deadline=deadline
                    )
                except NoNodeError:
                    children = []
                if owned(children, guid):
                    return
                if not (yield Sleep(backoff, deadline)):
                    raise exc
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return

    def size(self) -> Steps[int]:
        deadline = yield from budget()
        try:
            children: list[str] = yield from call("get_children", self.path, deadline=deadline)
        except NoNodeError:
            return 0
        return len(in_sequence_order(children, (ITEM_PREFIX,)))

    def _ensure_claims(self, deadline: float | None) -> Steps[None]:
        if self._claims_ready:
            return
        with contextlib.suppress(NodeExistsError):
            yield from call("create", self.claims, deadline=deadline, make_parents=True)
        self._claims_ready = True

    def get(self, block: bool, timeout: float | None) -> Steps[bytes | None]:
        """The oldest item, removed from the queue; None if there is none (after
        ``timeout`` seconds when blocking)."""
        deadline = yield from budget(timeout)
        try:
            yield from self._ensure_claims(deadline)
            while True:
                waiter: object | None = None
                if block:
                    children, waiter = yield from watch_call(
                        "get_children", self.path, deadline=deadline
                    )
                else:
                    children = yield from call("get_children", self.path, deadline=deadline)
                for item in in_sequence_order(children, (ITEM_PREFIX,)):
                    value = yield from self._claim(join(self.path, item), deadline)
                    if value is not None:
                        return value
                if waiter is None:
                    return None
                if not (yield Wait(waiter, deadline)):
                    return None
        except NoNodeError:
            self._claims_ready = False  # the queue was deleted under us
            return None
        except RETRIABLE:
            if (yield from expired(deadline)):
                return None
            raise

    def _claim(self, item: str, deadline: float | None) -> Steps[bytes | None]:
        """Take ``item``: its data, or None if another consumer took it first."""
        while True:
            try:
                data, stat = yield from call("get", item, deadline=deadline)
            except NoNodeError:
                return None
            claim = join(self.claims, new_guid())
            ops = (
                ("delete", (item,), {"version": stat.version}),
                ("create", (claim,), {"ttl": CLAIM_TTL}),
            )
            try:
                results = yield Transact(ops)
            except RETRIABLE:
                # Applied iff our claim marker exists (nobody else knows its name).
                if (yield from call("exists", claim, deadline=deadline)) is None:
                    continue  # not applied: try this item again
            else:
                if any(isinstance(r, Exception) for r in results):
                    return None  # another consumer deleted it first
            # A TTL node: if this fails, the server removes it anyway.
            soon = yield from budget(_CLAIM_DELETE_BUDGET)
            with contextlib.suppress(*_CLAIM_DELETE_ERRORS):
                yield from call("delete", claim, deadline=soon)
            value: bytes = data
            return value


class Queue:
    """A distributed FIFO queue for the blocking client."""

    def __init__(self, client: CoordinatorClient, path: str) -> None:
        self.client = client
        self.path = path
        self._core = QueueCore(path)

    def put(self, value: bytes) -> None:
        """Append one item (exactly once, despite connection loss)."""
        run_sync(self.client, self._core.put(value))

    def put_all(self, values: Sequence[bytes]) -> None:
        """Append several items atomically, in order."""
        run_sync(self.client, self._core.put_all(values))

    def get(self, block: bool = True, timeout: float | None = None) -> bytes | None:
        """Remove and return the oldest item; with ``block``, wait for one up to
        ``timeout`` seconds (None: forever). None if there was none."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        return run_sync(self.client, self._core.get(block, timeout))

    def __len__(self) -> int:
        return run_sync(self.client, self._core.size())


class AsyncQueue:
    """The trio form of ``Queue``."""

    def __init__(self, client: AsyncCoordinatorClient, path: str) -> None:
        self.client = client
        self.path = path
        self._core = QueueCore(path)

    async def put(self, value: bytes) -> None:
        await run_async(self.client, self._core.put(value))

    async def put_all(self, values: Sequence[bytes]) -> None:
        await run_async(self.client, self._core.put_all(values))

    async def get(self, block: bool = True, timeout: float | None = None) -> bytes | None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        return await run_async(self.client, self._core.get(block, timeout))

    async def size(self) -> int:
        return await run_async(self.client, self._core.size())
