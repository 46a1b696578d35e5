"""Handles on a running query: blocking (a background thread with its own trio
loop) and async (a task in the caller's trio nursery).

Both expose Spark's ``StreamingQuery`` surface: ``id``, ``run_id``, ``name``,
``status``, ``last_progress``, ``recent_progress``, ``is_active``,
``exception``, ``stop()``, ``await_termination()``, ``process_all_available()``
and listeners — plus ``export_metrics`` (Prometheus, client.streaming.metrics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio
from prometheus_client.registry import CollectorRegistry

from client.streaming.engine import MicroBatchEngine, StreamingQueryListener
from client.streaming.errors import StreamingQueryError
from client.streaming.metrics import StreamingMetrics
from client.streaming.progress import QueryProgress, QueryStatus


class _QueryView:
    """The read-only properties both handles share."""

    _engine: MicroBatchEngine

    @property
    def id(self) -> str | None:
        """The query's id: stable across restarts (stored in the checkpoint)."""
        return self._engine.id

    @property
    def run_id(self) -> str:
        """This run's id: new at every start."""
        return self._engine.run_id

    @property
    def name(self) -> str | None:
        return self._engine.name

    @property
    def status(self) -> QueryStatus:
        """What the query is doing now."""
        return self._engine.status

    @property
    def last_progress(self) -> QueryProgress | None:
        """The report of the last completed batch."""
        return self._engine.last_progress

    @property
    def recent_progress(self) -> list[QueryProgress]:
        """Reports of the recent batches (up to 100), oldest first."""
        return list(self._engine.recent_progress)

    @property
    def is_active(self) -> bool:
        return self._engine.active

    @property
    def exception(self) -> StreamingQueryError | None:
        """The error the query failed with (None if it did not)."""
        return self._engine.exception

    @property
    def last_committed_batch(self) -> int:
        """Id of the last batch committed (-1: none)."""
        return self._engine.committed_batch

    def add_listener(self, listener: StreamingQueryListener) -> None:
        """Receive this query's progress and termination events."""
        self._engine.listeners.append(listener)

    def remove_listener(self, listener: StreamingQueryListener) -> None:
        self._engine.listeners.remove(listener)

    def export_metrics(self, registry: CollectorRegistry | None = None) -> StreamingMetrics:
        """Export this query's progress as Prometheus metrics in ``registry`` (default:
        prometheus_client's global one) from the next batch on; see
        client.streaming.metrics. Returns the registry's ``StreamingMetrics``."""
        metrics = StreamingMetrics.for_registry(registry)
        if metrics not in self._engine.listeners:
            self._engine.listeners.append(metrics)
        return metrics


class StreamingQuery(_QueryView):
    """A query run by a background thread with its own trio event loop."""

    def __init__(self, engine: MicroBatchEngine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._stop_requested = False
        engine.observers.append(self._changed)

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def start(self) -> StreamingQuery:
        """Start the query's thread; returns once the query has its id (or failed)."""
        if self._thread is not None:
            raise RuntimeError("the query was already started")
        self._thread = threading.Thread(
            target=self._main, name=f"rivulet-query-{self._engine.name or ''}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        with self._cond:
            self._cond.wait_for(lambda: self._engine.id is not None or self._engine.terminated)
        return self

    def _main(self) -> None:
        try:
            trio.run(self._trio_main)
        except StreamingQueryError:
            pass  # kept in engine.exception; await_termination raises it
        finally:
            self._ready.set()
            self._changed()

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            self._ready.set()
            if self._stop_requested:
                scope.cancel()
            await self._engine.run()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the query and wait for its thread (a batch in flight is abandoned
        and re-run at the next start)."""
        self._stop_requested = True
        if self._thread is None:
            return
        self._ready.wait()
        token, scope = self._token, self._scope
        if token is not None and scope is not None:
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
        self._thread.join(timeout)

    def await_termination(self, timeout: float | None = None) -> bool:
        """Wait until the query ends; True if it did (within ``timeout`` seconds).
        Raises ``StreamingQueryError`` if it failed."""
        if self._thread is None:
            raise RuntimeError("the query was not started")
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._engine.exception is not None:
            raise self._engine.exception
        return True

    def process_all_available(self, timeout: float | None = None) -> None:
        """Block until everything available now has been processed and committed
        (for tests). Raises ``StreamingQueryError`` if the query fails, TimeoutError."""
        engine = self._engine
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            want = engine.plans_started

            def done() -> bool:
                return engine.terminated or engine.last_idle_plan >= want

            while not done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the query did not catch up in time")
                self._cond.wait(remaining if remaining is not None else 1.0)
        if engine.exception is not None:
            raise engine.exception

    def __enter__(self) -> StreamingQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AsyncStreamingQuery(_QueryView):
    """A query run as a task of the caller's trio nursery (``writer.start_async()``)."""

    def __init__(self, engine: MicroBatchEngine) -> None:
        self._engine = engine
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self._change = trio.Event()
        self.observed = False
        engine.observers.append(self._changed)

    def _changed(self) -> None:
        self._change.set()
        self._change = trio.Event()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                task_status.started()
                await self._engine.run()
        except StreamingQueryError:
            pass  # kept in engine.exception
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop the query and wait until it has."""
        if self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    async def await_termination(self, timeout: float | None = None) -> bool:
        """Wait until the query ends; True if it did. Raises StreamingQueryError."""
        if timeout is None:
            await self._done.wait()
        else:
            with trio.move_on_after(timeout):
                await self._done.wait()
        if not self._done.is_set():
            return False
        if self._engine.exception is not None:
            self.observed = True
            raise self._engine.exception
        return True

    async def process_all_available(self) -> None:
        """Wait until everything available now is processed and committed."""
        engine = self._engine
        want = engine.plans_started
        while not (engine.terminated or engine.last_idle_plan >= want):
            await self._change.wait()
        if engine.exception is not None:
            self.observed = True
            raise engine.exception


@asynccontextmanager
async def run_in_nursery(engine: MicroBatchEngine) -> AsyncIterator[AsyncStreamingQuery]:
    """Run ``engine`` in a nursery for the duration of the block; leaving the block
    stops the query. A failure nobody observed is raised at exit."""
    query = AsyncStreamingQuery(engine)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(query._run)
            try:
                yield query
            finally:
                if query._scope is not None:
                    query._scope.cancel()
    except BaseExceptionGroup as group:
        # The block's own error, not wrapped by the nursery that ran the query.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if engine.exception is not None and not query.observed:
        raise engine.exception
