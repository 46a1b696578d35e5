"""LeaderElection: one leader among candidates, the next one when it goes.

Candidates queue as protected ephemeral-sequential nodes; the lowest leads and
each other candidate watches only its predecessor (no herd). A leader that
crashes or is partitioned away loses its node when its session expires, and
the next candidate leads within about one session timeout.

Two styles, as in Curator:

* latch — ``campaign()`` waits until we lead; we lead until ``resign()`` (or
  the end of the ``with`` block)::

      election = LeaderElection(zk, "/election/scheduler", "host-1", data=b"10.0.0.1:80")
      with election:
          while election.is_leader:
              schedule_some_work()

* selector — ``run(func)`` waits until we lead, runs ``func`` as the leader and
  resigns when it returns, handing leadership to the next candidate
  (kazoo's ``Election.run``)::

      election.run(serve_as_leader, config)

Leadership-lost signal: ``is_leader`` turns False as soon as the connection is
suspended (the session may be expiring: another candidate may lead soon) and
for good when the session is lost; ``on_lost(state)`` is called then. The trio
form cancels the leader's body (``async with election`` / ``run``) and raises
LeadershipLostError.

Observers: ``leader()`` / ``leader_info()`` (the leader's identifier and data),
``contenders()``, and ``watch_leader(callback)`` (trio: ``async with
election.observe() as leaders: async for info in leaders``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import ParamSpec, TypeVar

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
from coordinator.recipes._ops import Steps, budget, call, join
from coordinator.recipes._watching import ChangeStream, Observer, observe, read_children
from coordinator.recipes.errors import LeadershipLostError
from coordinator.recipes.holding import HoldState
from coordinator.recipes.lock import MutexCore, release_steps
from coordinator.recipes.protected import delete_owned, in_sequence_order

CANDIDATE_PREFIX = "candidate-"

P = ParamSpec("P")
R = TypeVar("R")


def read_leader(path: str, children: list[str]) -> Steps[Participant | None]:
    """The leader among ``children`` of ``path`` (the lowest candidate), with its data."""
    deadline = yield from budget()
    for child in in_sequence_order(children, (CANDIDATE_PREFIX,)):
        try:
            data, _stat = yield from call("get", join(path, child), deadline=deadline)
        except NoNodeError:
            continue  # it just resigned: the next one leads
        return decode_participant(child, data)
    return None


def observe_leader(path: str) -> Steps[tuple[Participant | None, object]]:
    value: tuple[Participant | None, object] = yield from read_children(path, read_leader)
    return value


class LeaderElection:
    """Leader election for the blocking client (kazoo's ``Election``, Curator's
    LeaderLatch and LeaderSelector)."""

    def __init__(
        self,
        client: CoordinatorClient,
        path: str,
        identifier: str | None = None,
        data: bytes = b"",
        *,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.identifier = default_identifier() if identifier is None else identifier
        self._core = MutexCore(path, CANDIDATE_PREFIX, encode_participant(self.identifier, data))
        self._hold = SyncHold(client, on_lost, f"leadership of {path}")
        self._campaigning = threading.Lock()

    @property
    def is_leader(self) -> bool:
        """Leading, and known to lead (False while suspended and after a loss)."""
        return self._hold.is_held

    @property
    def state(self) -> HoldState:
        return self._hold.state

    def campaign(self, timeout: float | None = None) -> bool:
        """Stand as a candidate and wait until we lead; True then, False after
        ``timeout`` seconds (we withdraw). True at once if already leading."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        with self._campaigning:
            if self._hold.state in (HoldState.HELD, HoldState.SUSPENDED):
                return True
            if self._hold.state is HoldState.LOST:
                self._drop()
            self._core.cancelled = False
            try:
                won = run_sync(self.client, self._core.acquire(True, timeout))
            except BaseException:
                self._drop()
                raise
            if not won:
                self._drop()
                return False
            self._hold.acquired(self._core.session)
            return True

    def resign(self) -> None:
        """Stop leading (or standing); the next candidate leads. Safe to repeat."""
        self._hold.released()
        self._drop()

    def _drop(self) -> None:
        node, guid, session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=True)
        self._hold.released()
        cleanup_sync(
            self.client,
            lambda t: delete_owned(parent, guids, known, t),
            f"withdrawing from {self.path}",
            session if node else None,
        )

    def cancel(self) -> None:
        """End a pending ``campaign``/``run`` in another thread (AcquireCancelledError)."""
        self._core.cancelled = True
        sync_monitor(self.client).wake_all()

    def run(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Wait until we lead, call ``func(*args, **kwargs)`` as the leader, then
        resign; returns what ``func`` returned. ``func`` should check ``is_leader``
        in long loops: a blocking call cannot be interrupted from outside."""
        self.campaign()
        try:
            return func(*args, **kwargs)
        finally:
            self.resign()

    def contenders(self) -> list[str]:
        """The candidates' identifiers, the leader first."""
        return [p.identifier for p in run_sync(self.client, self._core.contenders())]

    def leader_info(self) -> Participant | None:
        """The current leader (identifier and data), or None when nobody stands."""
        value, _waiter = run_sync(self.client, observe_leader(self.path))
        return value

    def leader(self) -> str | None:
        """The current leader's identifier, or None."""
        info = self.leader_info()
        return None if info is None else info.identifier

    def watch_leader(
        self, callback: Callable[[Participant | None], object]
    ) -> Observer[Participant | None]:
        """Call ``callback(leader_info)`` on a background thread now and at every
        change of leader; ``.stop()`` the returned observer (or use ``with``)."""
        path = self.path
        return Observer(self.client, lambda: observe_leader(path), callback, f"leader-watch {path}")

    def __enter__(self) -> LeaderElection:
        self.campaign()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lost = self._hold.state is HoldState.LOST
        self.resign()
        if lost and exc_type is None:
            raise LeadershipLostError(
                f"{self.path}: the session expired while leading", HoldState.LOST
            )


class AsyncLeaderElection:
    """The trio form of ``LeaderElection``. The leader's body (``async with
    election:``, ``run(afunc)``) is cancelled when leadership is lost — or, unless
    ``cancel_on_suspend=False``, may be lost — and LeadershipLostError is raised."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        identifier: str | None = None,
        data: bytes = b"",
        *,
        on_lost: LostCallback | None = None,
        cancel_on_suspend: bool = True,
    ) -> None:
        self.client = client
        self.path = path
        self.identifier = default_identifier() if identifier is None else identifier
        self._core = MutexCore(path, CANDIDATE_PREFIX, encode_participant(self.identifier, data))
        self._hold = AsyncHold(client, on_lost, f"leadership of {path}", cancel_on_suspend)
        self._campaigning = trio.Lock()

    @property
    def is_leader(self) -> bool:
        return self._hold.is_held

    @property
    def state(self) -> HoldState:
        return self._hold.state

    async def campaign(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        async with self._campaigning:
            if self._hold.state in (HoldState.HELD, HoldState.SUSPENDED):
                return True
            if self._hold.state is HoldState.LOST:
                await self._drop()
            self._core.cancelled = False
            try:
                won = await run_async(self.client, self._core.acquire(True, timeout))
            except BaseException:
                await self._drop()
                raise
            if not won:
                await self._drop()
                return False
            self._hold.acquired(self._core.session)
            return True

    async def resign(self) -> None:
        self._hold.released()
        await self._drop()

    async def _drop(self) -> None:
        node, guid, session = self._core.take()
        parent, guids, known = release_steps(self.path, node, guid, search=True)
        self._hold.released()
        await cleanup_async(
            self.client,
            lambda t: delete_owned(parent, guids, known, t),
            f"withdrawing from {self.path}",
            session if node else None,
        )

    def cancel(self) -> None:
        self._core.cancelled = True
        async_monitor(self.client).wake_all()

    async def run(self, func: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Wait until we lead, run ``await func(...)`` as the leader, then resign.
        Raises LeadershipLostError (``func`` cancelled) if leadership is lost first."""
        async with self:
            return await func(*args, **kwargs)
        raise LeadershipLostError(f"{self.path}: leadership lost", self._hold.state)

    async def contenders(self) -> list[str]:
        return [p.identifier for p in await run_async(self.client, self._core.contenders())]

    async def leader_info(self) -> Participant | None:
        value, _waiter = await run_async(self.client, observe_leader(self.path))
        return value

    async def leader(self) -> str | None:
        info = await self.leader_info()
        return None if info is None else info.identifier

    @asynccontextmanager
    async def observe(self) -> AsyncIterator[ChangeStream[Participant | None]]:
        """``async with election.observe() as leaders: async for info in leaders``:
        the current leader, then every change (None while nobody stands)."""
        path = self.path
        async with observe(self.client, lambda: observe_leader(path)) as leaders:
            yield leaders

    async def __aenter__(self) -> AsyncLeaderElection:
        await self.campaign()
        self._hold.enter_block()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        swallowed, lost = self._hold.exit_block(exc_type, exc, tb)
        await self.resign()
        if lost is not None:
            raise LeadershipLostError(
                f"{self.path}: leadership was {lost.value} while leading", lost
            )
        return swallowed
