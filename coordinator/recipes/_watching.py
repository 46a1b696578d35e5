"""Observing a node's children: one-shot watches re-armed after every change.

Used by LeaderElection (who leads) and GroupMembership (who is in). A watch is
set together with each read, so no change between two reads is missed; after a
session loss (which drops one-shot watches) the monitor wakes the observer and
it reads and re-arms at once. Observers report values, not events: a callback
(or the async iterator) sees each distinct value once, and consecutive changes
may be coalesced into one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Generic, TypeVar

import trio

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import NoNodeError
from coordinator.recipes._driver import run_async, run_sync, sync_monitor
from coordinator.recipes._ops import TRANSIENT, Steps, Wait, budget, watch_call

logger = logging.getLogger("coordinator.recipes")

T = TypeVar("T")

_PAUSE = 0.5
_UNSET: Any = object()

Reader = Callable[[str, list[str]], Steps[T]]


def read_children(path: str, read: Reader[T]) -> Steps[tuple[T, object]]:
    """``read(path, children)`` with a watch on the child list (or, while ``path``
    does not exist, on its creation); returns the value and the waiter."""
    deadline = yield from budget()
    while True:
        try:
            children, waiter = yield from watch_call("get_children", path, deadline=deadline)
        except NoNodeError:
            stat, waiter = yield from watch_call("exists", path, deadline=deadline)
            if stat is not None:
                continue
            empty: T = yield from read(path, [])
            return empty, waiter
        value: T = yield from read(path, children)
        return value, waiter


def wait_for(waiter: object) -> Steps[None]:
    yield Wait(waiter, None)


class Observer(Generic[T]):
    """Calls ``callback(value)`` on a background thread whenever the observed value
    changes (first with the current value). ``stop()`` (or leaving ``with``) ends it."""

    def __init__(
        self,
        client: CoordinatorClient,
        make_steps: Callable[[], Steps[tuple[T, object]]],
        callback: Callable[[T], object],
        name: str,
    ) -> None:
        self._client = client
        self._make_steps = make_steps
        self._callback = callback
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last: Any = _UNSET
        while not self._stopped.is_set():
            try:
                value, waiter = run_sync(self._client, self._make_steps())
            except TRANSIENT as exc:
                logger.info("observer %s: %s; retrying", self._thread.name, exc)
                self._stopped.wait(_PAUSE)
                continue
            if value != last and not self._stopped.is_set():
                last = value
                try:
                    self._callback(value)
                except Exception:
                    logger.exception("observer %s: callback failed", self._thread.name)
            if not self._stopped.is_set():
                run_sync(self._client, wait_for(waiter))

    def stop(self) -> None:
        """Stop observing; no callback starts after this returns (from another thread)."""
        self._stopped.set()
        sync_monitor(self._client).wake_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(30.0)

    def __enter__(self) -> Observer[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ChangeStream(Generic[T]):
    """An async iterator of an observed value: the current value first, then each
    distinct later value. It reads on demand in the iterating task (no background
    task, so nothing raised inside the consumer is wrapped in an exception group)."""

    def __init__(
        self, client: AsyncCoordinatorClient, make_steps: Callable[[], Steps[tuple[T, object]]]
    ) -> None:
        self._client = client
        self._make_steps = make_steps
        self._waiter: object | None = None
        self._last: Any = _UNSET

    def __aiter__(self) -> ChangeStream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._waiter is not None:
                await run_async(self._client, wait_for(self._waiter))
            try:
                value, self._waiter = await run_async(self._client, self._make_steps())
            except TRANSIENT as exc:
                logger.info("observer: %s; retrying", exc)
                self._waiter = None
                await trio.sleep(_PAUSE)
                continue
            if value != self._last:
                self._last = value
                return value


@asynccontextmanager
async def observe(
    client: AsyncCoordinatorClient, make_steps: Callable[[], Steps[tuple[T, object]]]
) -> AsyncIterator[ChangeStream[T]]:
    """``async with observe(...) as changes: async for value in changes``."""
    yield ChangeStream(client, make_steps)
