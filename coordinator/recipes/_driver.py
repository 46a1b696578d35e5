"""Drivers: run a recipe's steps against the blocking or the trio client.

Each client gets one ``Monitor``, a connection-state listener that wakes every
recipe currently waiting on that client: a state change may mean a watch was
lost with its session, so waiters must look again instead of sleeping until
their deadline. Waiters carry the monitor's generation from the moment their
watch was set, so a state change between setting the watch and starting to
wait is never missed.

Cleanup (deleting our nodes after a release, a timeout, an error or a
cancellation) must not be skipped just because the coordinator is briefly
unreachable: an ephemeral node left behind by a live session blocks every other
contender. ``cleanup_sync``/``cleanup_async`` run it inline when connected (for
at most a few seconds) and otherwise — or if that fails — hand it to a
background retry (Curator's "guaranteed delete"), which ends once it succeeds,
once the session is gone (the ephemerals with it), or after
``BACKGROUND_BUDGET``. So a release never blocks on a suspended connection.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from coordinator.client import AsyncCoordinatorClient, ConnectionState, CoordinatorClient
from coordinator.errors import CoordinatorError
from coordinator.recipes._ops import (
    RETRIABLE,
    Call,
    Deadline,
    Op,
    Session,
    Sleep,
    Steps,
    Transact,
    Wait,
    WatchCall,
)

logger = logging.getLogger("coordinator.recipes")

T = TypeVar("T")

INLINE_CLEANUP_BUDGET = 5.0
BACKGROUND_BUDGET = 600.0
_BACKGROUND_PAUSE = 1.0


# ---------------------------------------------------------------- blocking


class _SyncWaiter:
    __slots__ = ("event", "generation")

    def __init__(self, generation: int) -> None:
        self.event = threading.Event()
        self.generation = generation

    def fire(self, _event: object) -> None:
        self.event.set()


class SyncMonitor:
    """Wakes the waiters of one blocking client on every connection state change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self._waiting: set[threading.Event] = set()

    def on_state(self, _state: ConnectionState) -> None:
        self.wake_all()

    def wake_all(self) -> None:
        with self._lock:
            self.generation += 1
            waiting = list(self._waiting)
        for event in waiting:
            event.set()

    def new_waiter(self) -> _SyncWaiter:
        with self._lock:
            return _SyncWaiter(self.generation)

    def wait(self, waiter: _SyncWaiter, timeout: float | None) -> bool:
        with self._lock:
            if waiter.generation != self.generation or waiter.event.is_set():
                return True
            self._waiting.add(waiter.event)
        try:
            return waiter.event.wait(timeout)
        finally:
            with self._lock:
                self._waiting.discard(waiter.event)


_sync_monitors: weakref.WeakKeyDictionary[CoordinatorClient, SyncMonitor] = (
    weakref.WeakKeyDictionary()
)
_sync_monitors_lock = threading.Lock()


def sync_monitor(client: CoordinatorClient) -> SyncMonitor:
    with _sync_monitors_lock:
        monitor = _sync_monitors.get(client)
        if monitor is None:
            monitor = _sync_monitors[client] = SyncMonitor()
            client.add_listener(monitor.on_state)
        return monitor


def _sync_remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _execute_sync(client: CoordinatorClient, monitor: SyncMonitor, op: Op) -> Any:
    if isinstance(op, Call):
        return getattr(client, op.method)(*op.args, **op.kwargs)
    if isinstance(op, WatchCall):
        waiter = op.waiter if isinstance(op.waiter, _SyncWaiter) else monitor.new_waiter()
        result = getattr(client, op.method)(op.path, watch=waiter.fire, **op.kwargs)
        return result, waiter
    if isinstance(op, Wait):
        if not isinstance(op.waiter, _SyncWaiter):
            raise TypeError(f"not a waiter of this driver: {op.waiter!r}")
        return monitor.wait(op.waiter, _sync_remaining(op.deadline))
    if isinstance(op, Sleep):
        remaining = _sync_remaining(op.deadline)
        if remaining is not None and remaining <= 0:
            return False
        pause = op.seconds if remaining is None else min(op.seconds, remaining)
        if pause > 0:
            monitor.wait(monitor.new_waiter(), pause)
        return op.deadline is None or time.monotonic() < op.deadline
    if isinstance(op, Deadline):
        return None if op.timeout is None else time.monotonic() + op.timeout
    if isinstance(op, Transact):
        transaction = client.transaction()
        for method, args, kwargs in op.ops:
            getattr(transaction, method)(*args, **kwargs)
        return transaction.commit()
    if isinstance(op, Session):
        return client.session_id, client.session_timeout
    raise TypeError(f"unknown recipe operation {op!r}")


def run_sync(client: CoordinatorClient, steps: Steps[T]) -> T:
    """Run ``steps`` to completion on the calling thread."""
    monitor = sync_monitor(client)
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                op = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            try:
                value = _execute_sync(client, monitor, op)
            except Exception as exc:
                error = exc
    finally:
        steps.close()


def _session_gone(client: CoordinatorClient | AsyncCoordinatorClient, session: int | None) -> bool:
    """Whether the session whose ephemerals a cleanup deletes has ended (they are gone)."""
    return session is not None and client.session_id != session


def cleanup_sync(
    client: CoordinatorClient,
    make_steps: Callable[[float], Steps[None]],
    what: str,
    session: int | None = None,
) -> None:
    """Run cleanup steps (``make_steps(budget)``) now; if the coordinator cannot be
    reached in time, keep retrying on a background thread. ``session``: the
    cleanup only deletes that session's ephemerals, so it ends when the session does."""
    if _session_gone(client, session):
        return
    if client.connected:
        try:
            run_sync(client, make_steps(INLINE_CLEANUP_BUDGET))
            return
        except RETRIABLE as exc:
            logger.info("%s: coordinator unreachable (%s); retrying in the background", what, exc)
        except CoordinatorError as exc:
            logger.warning("%s failed: %s", what, exc)
            return
    thread = threading.Thread(
        target=_background_sync,
        args=(client, make_steps, what, session),
        name="rivulet-recipe-cleanup",
        daemon=True,
    )
    thread.start()


def _background_sync(
    client: CoordinatorClient,
    make_steps: Callable[[float], Steps[None]],
    what: str,
    session: int | None,
) -> None:
    give_up = time.monotonic() + BACKGROUND_BUDGET
    while time.monotonic() < give_up:
        if _session_gone(client, session):
            return
        try:
            run_sync(client, make_steps(INLINE_CLEANUP_BUDGET))
            logger.info("%s: done in the background", what)
            return
        except RETRIABLE:
            time.sleep(_BACKGROUND_PAUSE)
        except CoordinatorError as exc:
            logger.warning("%s failed: %s", what, exc)
            return
    logger.warning("%s: gave up after %.0fs", what, BACKGROUND_BUDGET)


# ------------------------------------------------------------------- trio


class _AsyncWaiter:
    __slots__ = ("event", "generation")

    def __init__(self, generation: int) -> None:
        self.event = trio.Event()
        self.generation = generation

    def fire(self, _event: object) -> None:
        self.event.set()


class AsyncMonitor:
    """Wakes the waiters of one trio client on every connection state change.

    Its listener runs in the client's callback task, on the trio thread."""

    def __init__(self) -> None:
        self.generation = 0
        self._waiting: set[trio.Event] = set()

    def on_state(self, _state: ConnectionState) -> None:
        self.wake_all()

    def wake_all(self) -> None:
        self.generation += 1
        for event in list(self._waiting):
            event.set()

    def new_waiter(self) -> _AsyncWaiter:
        return _AsyncWaiter(self.generation)

    async def wait(self, waiter: _AsyncWaiter, deadline: float | None) -> bool:
        if waiter.generation != self.generation or waiter.event.is_set():
            await trio.lowlevel.checkpoint()
            return True
        self._waiting.add(waiter.event)
        try:
            with trio.move_on_at(float("inf") if deadline is None else deadline):
                await waiter.event.wait()
            return waiter.event.is_set()
        finally:
            self._waiting.discard(waiter.event)


_async_monitors: weakref.WeakKeyDictionary[AsyncCoordinatorClient, AsyncMonitor] = (
    weakref.WeakKeyDictionary()
)


def async_monitor(client: AsyncCoordinatorClient) -> AsyncMonitor:
    monitor = _async_monitors.get(client)
    if monitor is None:
        monitor = _async_monitors[client] = AsyncMonitor()
        client.add_listener(monitor.on_state)
    return monitor


async def _execute_async(client: AsyncCoordinatorClient, monitor: AsyncMonitor, op: Op) -> Any:
    if isinstance(op, Call):
        return await getattr(client, op.method)(*op.args, **op.kwargs)
    if isinstance(op, WatchCall):
        waiter = op.waiter if isinstance(op.waiter, _AsyncWaiter) else monitor.new_waiter()
        result = await getattr(client, op.method)(op.path, watch=waiter.fire, **op.kwargs)
        return result, waiter
    if isinstance(op, Wait):
        if not isinstance(op.waiter, _AsyncWaiter):
            raise TypeError(f"not a waiter of this driver: {op.waiter!r}")
        return await monitor.wait(op.waiter, op.deadline)
    if isinstance(op, Sleep):
        now = trio.current_time()
        if op.deadline is not None and now >= op.deadline:
            await trio.lowlevel.checkpoint()
            return False
        wake = now + op.seconds if op.deadline is None else min(now + op.seconds, op.deadline)
        await monitor.wait(monitor.new_waiter(), wake)
        return op.deadline is None or trio.current_time() < op.deadline
    if isinstance(op, Deadline):
        return None if op.timeout is None else trio.current_time() + op.timeout
    if isinstance(op, Transact):
        transaction = client.transaction()
        for method, args, kwargs in op.ops:
            getattr(transaction, method)(*args, **kwargs)
        return await transaction.commit()
    if isinstance(op, Session):
        return client.session_id, client.session_timeout
    raise TypeError(f"unknown recipe operation {op!r}")


async def run_async(client: AsyncCoordinatorClient, steps: Steps[T]) -> T:
    """Run ``steps`` to completion in the calling task."""
    monitor = async_monitor(client)
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                op = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            try:
                value = await _execute_async(client, monitor, op)
            except Exception as exc:
                error = exc
    finally:
        steps.close()


async def cleanup_async(
    client: AsyncCoordinatorClient,
    make_steps: Callable[[float], Steps[None]],
    what: str,
    session: int | None = None,
) -> None:
    """Run cleanup steps now, shielded from cancellation (the caller may be being
    cancelled); if the coordinator cannot be reached in time, keep retrying in a
    trio system task. ``session`` as for ``cleanup_sync``."""
    if _session_gone(client, session):
        return
    if client.connected:
        with trio.CancelScope(shield=True), trio.move_on_after(INLINE_CLEANUP_BUDGET + 1.0):
            try:
                await run_async(client, make_steps(INLINE_CLEANUP_BUDGET))
                return
            except RETRIABLE as exc:
                logger.info(
                    "%s: coordinator unreachable (%s); retrying in the background", what, exc
                )
            except CoordinatorError as exc:
                logger.warning("%s failed: %s", what, exc)
                return
    trio.lowlevel.spawn_system_task(
        _background_async, client, make_steps, what, session, name="rivulet-recipe-cleanup"
    )


async def _background_async(
    client: AsyncCoordinatorClient,
    make_steps: Callable[[float], Steps[None]],
    what: str,
    session: int | None,
) -> None:
    with trio.move_on_after(BACKGROUND_BUDGET) as scope:
        while True:
            if _session_gone(client, session):
                return
            try:
                await run_async(client, make_steps(INLINE_CLEANUP_BUDGET))
                logger.info("%s: done in the background", what)
                return
            except RETRIABLE:
                await trio.sleep(_BACKGROUND_PAUSE)
            except CoordinatorError as exc:
                logger.warning("%s failed: %s", what, exc)
                return
    if scope.cancelled_caught:
        logger.warning("%s: gave up after %.0fs", what, BACKGROUND_BUDGET)
