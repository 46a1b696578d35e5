"""Running partition tasks off the event loop, with retries.

A task is ``run_task(TaskSpec)``: read the partition's range into a DataFrame
and run the plan's task side on it. It runs on a worker thread — Polars
releases the GIL for its vectorised work, so tasks of one batch run in
parallel; record decoding (Python under the GIL) is serialised, which measured
faster than interleaving it — or in a worker process (trio-parallel's cached
workers), which pays off for record-level Python functions (``map``,
``flat_map``, row filters): ``executor="auto"`` sends tasks that run such
functions on many rows to processes when the plan can be pickled, everything
else to threads. Shipping fetched bytes to a process costs more than decoding
them (measured: ~8 MB takes longer through a pipe than to decode).

A failing task is retried (``max_attempts``, exponential backoff) — fetch and
compute both, since a task is a pure function of its range — before the batch,
and with it the query, fails with ``TaskFailedError`` whose cause is the task's
last error.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import trio
import trio_parallel

from client.streaming.errors import TaskFailedError
from client.streaming.plan import (
    FilterRows,
    FlatMapRows,
    MapBatches,
    MapRows,
    Operator,
    QueryPlan,
    TaskResult,
    run_pipeline,
)
from client.streaming.sources import PartitionReader

log = logging.getLogger(__name__)

EXECUTORS = ("auto", "threads", "processes")
# "auto" sends a task with record-level Python functions to a worker process from
# this many rows.
PROCESS_MIN_ROWS = 50_000
# Tasks this small, without user functions, run in the event loop: a thread hop
# costs more than the work.
INLINE_MAX_ROWS = 2_000


def has_user_code(ops: Sequence[Operator]) -> bool:
    """Whether any operator runs a user-supplied Python function."""
    return any(isinstance(op, MapRows | FlatMapRows | FilterRows | MapBatches) for op in ops)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """Everything one task needs (picklable when the plan is)."""

    plan: QueryPlan
    reader: PartitionReader
    partition: str
    start: int
    end: int
    watermark: int | None
    data: Any = None


def run_task(spec: TaskSpec) -> TaskResult:
    """Read the range and run the task side of the plan (in a worker)."""
    df = spec.reader.read(spec.start, spec.end, spec.data)
    return run_pipeline(spec.plan, df, spec.watermark)


def picklable(obj: object) -> bool:
    """Whether ``obj`` survives pickling (lambdas and closures do not)."""
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError, ValueError):
        return False
    return True


class TaskRunner:
    """Runs tasks with retries on threads or processes (see the module doc)."""

    def __init__(
        self,
        *,
        executor: str = "auto",
        max_workers: int = 2,
        max_attempts: int = 4,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        if max_attempts < 1:
            raise ValueError("max_task_attempts must be >= 1")
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.executor = executor
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.threads = trio.CapacityLimiter(max_workers)
        self.processes = trio.CapacityLimiter(max_workers)
        self.max_workers = max_workers
        self._plan_picklable: bool | None = None
        self.retries = 0

    async def __aenter__(self) -> TaskRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Nothing to release: worker processes are trio-parallel's shared, cached ones."""

    def _use_processes(self, spec: TaskSpec) -> bool:
        if self.executor == "threads":
            return False
        if self._plan_picklable is None:
            self._plan_picklable = picklable(replace(spec, data=None))
            if not self._plan_picklable:
                if self.executor == "processes":
                    raise TypeError(
                        "executor='processes' needs a picklable query: use module-level "
                        "functions instead of lambdas or closures"
                    )
                log.info("the query's functions cannot be pickled; tasks run in threads")
        if not self._plan_picklable:
            return False
        if self.executor == "processes":
            return True
        row_level = any(
            isinstance(op, MapRows | FlatMapRows | FilterRows) for op in spec.plan.pre_ops
        )
        return row_level and spec.end - spec.start >= PROCESS_MIN_ROWS

    async def execute(self, spec: TaskSpec) -> TaskResult:
        """Run one task attempt (no retries)."""
        if spec.end - spec.start <= INLINE_MAX_ROWS and not has_user_code(spec.plan.pre_ops):
            return run_task(spec)
        if self._use_processes(spec):
            result: TaskResult = await trio_parallel.run_sync(
                run_task, spec, kill_on_cancel=True, limiter=self.processes
            )
            return result
        return await trio.to_thread.run_sync(run_task, spec, limiter=self.threads)

    async def run(
        self,
        name: str,
        fetch: Callable[[], Awaitable[Any]],
        make_spec: Callable[[Any], TaskSpec],
    ) -> TaskResult:
        """Fetch and compute one task, retrying failures with backoff."""
        delay = self.backoff
        attempt = 1
        while True:
            try:
                data = await fetch()
                return await self.execute(make_spec(data))
            except Exception as exc:  # user functions may raise anything (not Cancelled)
                if attempt >= self.max_attempts:
                    raise TaskFailedError(
                        f"task {name} failed {attempt} times; last error: {exc!r}",
                        task=name,
                        attempts=attempt,
                    ) from exc
                self.retries += 1
                log.warning(
                    "task %s failed (attempt %d of %d): %r", name, attempt, self.max_attempts, exc
                )
            attempt += 1
            await self.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
