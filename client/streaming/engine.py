"""The micro-batch execution loop (trio).

Each trigger: ask the source for its latest offsets, let the planner choose the
ranges, let the trigger policy decide; to run batch ``b``:

1. write ``offsets/b`` (ranges, batch timestamp, watermark) and fsync it;
2. run one task per partition with data, concurrently, with retries;
3. on the driver (a worker thread): merge partial aggregates into the state,
   apply the output mode, run the operators after the aggregation, and write
   state version ``b + 1`` (delta, sometimes snapshot);
4. hand the output to the sink (idempotent by batch id);
5. write ``commits/b`` (watermark state, the sink's state); report progress.

A restarted query re-runs a batch that has offsets but no commit with the
same ranges, watermark and timestamp, from state version ``b``; sources are
replayable and tasks deterministic, so the sink sees the same output again and
ignores or deduplicates it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
import trio

from client.streaming.checkpoint import CheckpointDirectory, CommitEntry, OffsetEntry
from client.streaming.errors import StreamingQueryError, TaskFailedError
from client.streaming.executor import INLINE_MAX_ROWS, TaskRunner, TaskSpec, has_user_code
from client.streaming.plan import (
    AggregationState,
    QueryPlan,
    TaskResult,
    analyze,
    window_source_dtype,
)
from client.streaming.planner import plan_batch
from client.streaming.progress import (
    BatchTimer,
    ProgressRecorder,
    QueryProgress,
    QueryStatus,
    StateOperatorProgress,
    format_time_ms,
)
from client.streaming.sinks import BatchContext, Sink
from client.streaming.sources import Source
from client.streaming.state import StateDelta, StateFiles, StateStore
from client.streaming.triggers import AvailableNow, Decision, ProcessingTime, Trigger, TriggerPolicy
from client.streaming.watermark import EventTimeStats, WatermarkTracker

log = logging.getLogger(__name__)

RECENT_PROGRESS = 100


@dataclass(slots=True)
class QueryOptions:
    """How a query runs (the writer's options; documented in docs/streaming.md)."""

    output_mode: str = "append"
    trigger: Trigger = field(default_factory=ProcessingTime)
    checkpoint_location: str | None = None
    name: str | None = None
    max_records_per_trigger: int | None = None
    max_task_attempts: int = 4
    task_retry_backoff_ms: int = 100
    min_batches_to_retain: int = 100
    state_snapshot_interval: int = 10
    executor: str = "auto"
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    idle_poll_ms: int = 100

    def validate(self) -> None:
        if self.max_records_per_trigger is not None and self.max_records_per_trigger < 1:
            raise ValueError("max_records_per_trigger must be >= 1")
        for name in (
            "max_task_attempts",
            "min_batches_to_retain",
            "state_snapshot_interval",
            "max_workers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.task_retry_backoff_ms < 0 or self.idle_poll_ms < 1:
            raise ValueError("task_retry_backoff_ms must be >= 0 and idle_poll_ms >= 1")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["trigger"] = type(self.trigger).__name__ + (
            f"({self.trigger.interval_ms} ms)" if isinstance(self.trigger, ProcessingTime) else ""
        )
        return out


@dataclass(frozen=True, slots=True)
class QueryStartedEvent:
    id: str
    run_id: str
    name: str | None
    timestamp: str


@dataclass(frozen=True, slots=True)
class QueryTerminatedEvent:
    id: str
    run_id: str
    exception: str | None


class StreamingQueryListener:
    """Receives a query's lifecycle and progress events (Spark's listener).

    Methods run on the query's event loop thread; keep them short. An exception
    in a listener is logged and otherwise ignored.
    """

    def on_query_started(self, event: QueryStartedEvent) -> None:
        """The query started (or restarted from its checkpoint)."""

    def on_query_progress(self, progress: QueryProgress) -> None:
        """A batch completed."""

    def on_query_terminated(self, event: QueryTerminatedEvent) -> None:
        """The query stopped, normally or with ``event.exception``."""


def unwrap(exc: BaseException) -> BaseException:
    """The single error inside nested one-member exception groups (trio nurseries)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _wall_ms() -> int:
    return int(time.time() * 1000)


class MicroBatchEngine:
    """Runs one query until its trigger ends, it is cancelled, or it fails."""

    def __init__(
        self,
        source: Source,
        plan: QueryPlan,
        sink: Sink,
        options: QueryOptions,
        *,
        listeners: list[StreamingQueryListener] | None = None,
        wall_clock: Callable[[], int] = _wall_ms,
    ) -> None:
        options.validate()
        self.source = source
        self.plan = plan
        self.sink = sink
        self.options = options
        self.listeners = list(listeners or [])
        self.wall_clock = wall_clock
        self.id: str | None = None
        self.run_id = str(uuid.uuid4())
        self.name = options.name
        self.status = QueryStatus()
        self.recent_progress: deque[QueryProgress] = deque(maxlen=RECENT_PROGRESS)
        self.exception: StreamingQueryError | None = None
        self.active = False
        self.terminated = False
        self.committed_batch = -1
        self.plans_started = 0
        self.last_idle_plan = -1
        self.observers: list[Callable[[], None]] = []
        # run state
        self.current: dict[str, int] = {}
        self.tracker: WatermarkTracker | None = None
        self.last_batch_watermark: int | None = None
        self.agg_state: AggregationState | None = None
        self.state_files: StateFiles | None = None
        self.partial_schema: dict[str, pl.DataType] = {}
        self.output_schema: dict[str, pl.DataType] = {}
        self.checkpoint: CheckpointDirectory | None = None
        self.runner: TaskRunner | None = None
        self.recorder: ProgressRecorder | None = None
        self.evicts = plan.evicts_by_watermark(options.output_mode)
        self._next_batch = 0
        self._nursery: trio.Nursery | None = None
        self.task_plan = QueryPlan(plan.pre_ops, plan.aggregate, ())

    # -- observers -------------------------------------------------------------------------

    def _notify(self) -> None:
        for fn in list(self.observers):
            fn()

    def _emit(self, method: str, arg: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(arg)
            except Exception:  # a listener must not take the query down
                log.exception("streaming query listener %r failed in %s", listener, method)

    @property
    def last_progress(self) -> QueryProgress | None:
        return self.recent_progress[-1] if self.recent_progress else None

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the query; errors are kept in ``exception`` and re-raised as
        ``StreamingQueryError``; cancellation stops the query cleanly."""
        self.active = True
        error: BaseException | None = None
        try:
            await self._run()
        except Exception as exc:  # any failure of the query, including user code
            error = unwrap(exc)
            label = self.name or self.id or "query"
            self.exception = StreamingQueryError(f"{label} failed: {error!r}", error)
            log.error("streaming query %s failed: %r", label, error)
        finally:
            self.active = False
            self.terminated = True
            self.status = QueryStatus("Stopped", False, False)
            self._emit(
                "on_query_terminated",
                QueryTerminatedEvent(
                    self.id or "", self.run_id, None if error is None else repr(error)
                ),
            )
            self._notify()
        if self.exception is not None:
            raise self.exception

    async def _run(self) -> None:
        opts = self.options
        schema = self.source.schema()
        self.partial_schema, self.output_schema = analyze(self.plan, schema, opts.output_mode)
        self.sink.check_mode(opts.output_mode)
        self.sink.set_schema(self.output_schema)
        window_dtype = window_source_dtype(self.plan, schema)
        temporary = opts.checkpoint_location is None
        location = opts.checkpoint_location or tempfile.mkdtemp(prefix="rivulet-checkpoint-")
        checkpoint = self.checkpoint = CheckpointDirectory(location)
        meta = await trio.to_thread.run_sync(checkpoint.open, opts.to_json())
        self.id = str(meta["id"])
        self.recorder = ProgressRecorder(self.id, self.run_id, self.name)
        try:
            async with (
                trio.open_nursery() as nursery,
                TaskRunner(
                    executor=opts.executor,
                    max_workers=opts.max_workers,
                    max_attempts=opts.max_task_attempts,
                    backoff=opts.task_retry_backoff_ms / 1000.0,
                ) as runner,
            ):
                self.runner = runner
                self._nursery = nursery
                try:
                    await self._prepare(nursery, checkpoint, window_dtype)
                    await self._loop(checkpoint)
                finally:
                    with trio.CancelScope(shield=True):
                        await self.source.aclose()
                        await self.sink.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            checkpoint.close()
            if temporary:
                shutil.rmtree(location, ignore_errors=True)

    async def _prepare(
        self,
        nursery: trio.Nursery,
        checkpoint: CheckpointDirectory,
        window_dtype: pl.DataType | None,
    ) -> None:
        opts = self.options
        self.status = QueryStatus("Initializing sources", False, False)
        initial = await self.source.open(nursery, checkpoint, 0, self.wall_clock())
        if self.id is None:
            raise RuntimeError("query id unknown")
        await self.sink.open(nursery, checkpoint, self.id)
        recovery = await trio.to_thread.run_sync(checkpoint.recovery)
        wm = self.plan.watermark
        if wm is not None:
            self.tracker = WatermarkTracker(wm.delay_ms)
        self.current = dict(initial)
        last = recovery.last_committed
        if last >= 0:
            offsets = await trio.to_thread.run_sync(checkpoint.read_offsets, last)
            commit = await trio.to_thread.run_sync(checkpoint.read_commit, last)
            self.current.update(offsets.end_offsets()[0])
            self.last_batch_watermark = offsets.watermark_ms
            if self.tracker is not None:
                self.tracker.max_event_time = commit.max_event_time
            self.sink.restore(commit.sink)
            self.committed_batch = last
        if self.plan.aggregate is not None:
            files = self.state_files = StateFiles(
                os.path.join(checkpoint.state_dir, "0"),
                snapshot_interval=opts.state_snapshot_interval,
            )
            store = await trio.to_thread.run_sync(files.load, last + 1)
            await trio.to_thread.run_sync(files.discard_after, last + 1)
            self.agg_state = AggregationState(
                self.plan.aggregate,
                opts.output_mode,
                evict=self.evicts,
                store=store,
                window_dtype=window_dtype,
            )
        self._emit(
            "on_query_started",
            QueryStartedEvent(
                self.id, self.run_id, self.name, format_time_ms(self.wall_clock()) or ""
            ),
        )
        self._next_batch = recovery.next_batch
        for batch_id in recovery.reruns:
            entry = await trio.to_thread.run_sync(checkpoint.read_offsets, batch_id)
            log.info("re-running batch %d, which did not commit", entry.batch_id)
            if self.recorder is None:
                raise RuntimeError("no progress recorder")
            timer = self.recorder.start_trigger(trio.current_time())
            await self._run_batch(entry, {}, timer, replay=True)

    async def _loop(self, checkpoint: CheckpointDirectory) -> None:
        opts = self.options
        policy = TriggerPolicy(opts.trigger)
        recorder = self.recorder
        if recorder is None:
            raise RuntimeError("no progress recorder")
        target: dict[str, int] | None = None
        if isinstance(opts.trigger, AvailableNow):
            target = await self.source.available_now_target(self.current, self.wall_clock())
        limit = opts.max_records_per_trigger if policy.limits_batches else None
        while True:
            now = trio.current_time()
            at = policy.next_trigger_at(now)
            if at > now:
                self.status = QueryStatus(
                    "Waiting for next trigger", self.status.is_data_available, False
                )
                await trio.sleep_until(at)
            started = trio.current_time()
            policy.triggered(started)
            plan_no = self.plans_started
            self.plans_started += 1
            timer = recorder.start_trigger(started)
            self.status = QueryStatus(
                "Getting offsets from " + self.source.description, False, True
            )
            latest = await self.source.latest_offsets(self.current, self.wall_clock())
            plan = plan_batch(self.current, latest, limit, target)
            timer.add("planning", trio.current_time() - started)
            next_wm = self.tracker.watermark if self.tracker is not None else None
            moved = self.evicts and next_wm is not None and next_wm != self.last_batch_watermark
            caught_up = target is None or all(
                plan.ranges.get(p, (0, self.current.get(p, 0)))[1] >= t for p, t in target.items()
            )
            decision = policy.decide(
                has_data=plan.has_data, watermark_moved=moved, caught_up=caught_up
            )
            if decision is Decision.STOP:
                self.last_idle_plan = plan_no
                break
            if decision is Decision.SKIP:
                self.last_idle_plan = plan_no
                self.status = QueryStatus("Waiting for data to arrive", False, False)
                self._notify()
                if policy.interval == 0:
                    await self.source.wait_for_data(self.current, opts.idle_poll_ms / 1000.0)
                continue
            self.status = QueryStatus("Processing new data", plan.has_data, True)
            entry = OffsetEntry(self._next_batch, self.wall_clock(), next_wm, [plan.ranges])
            await self._run_batch(entry, latest, timer, replay=False, log_offsets=True)
            policy.ran()
            self._next_batch += 1

    async def _run_tasks(
        self, ranges: Mapping[str, tuple[int, int]], watermark: int | None
    ) -> list[TaskResult]:
        runner = self.runner
        if runner is None:
            raise RuntimeError("no task runner")
        items = [(p, s, e) for p, (s, e) in sorted(ranges.items()) if e > s]
        results: list[TaskResult | None] = [None] * len(items)
        failure: list[BaseException] = []
        source = self.source
        plan = self.task_plan

        async with trio.open_nursery() as nursery:

            async def one(i: int, p: str, s: int, e: int) -> None:
                def make_spec(data: Any) -> TaskSpec:
                    return TaskSpec(plan, source.reader(p), p, s, e, watermark, data)

                async def fetch() -> Any:
                    return await source.fetch(p, s, e)

                try:
                    results[i] = await runner.run(f"{p}[{s}:{e}]", fetch, make_spec)
                except TaskFailedError as exc:
                    failure.append(exc)
                    nursery.cancel_scope.cancel()

            for i, (p, s, e) in enumerate(items):
                nursery.start_soon(one, i, p, s, e)
        if failure:
            raise failure[0]
        return [r for r in results if r is not None]

    def _driver(
        self, partial: pl.DataFrame | None, watermark: int | None
    ) -> tuple[pl.DataFrame, StateOperatorProgress | None, StateDelta | None]:
        """Stateful merge, output mode, post-aggregation operators (in a thread).
        The state's new version is committed in memory; its files are written next."""
        agg = self.agg_state
        if agg is not None:
            store = agg.store
            try:
                out = agg.process(partial, watermark, self.partial_schema)
                for op in self.plan.post_ops:
                    out = op.apply(out)
            except BaseException:
                store.abort()
                agg.rebuild_index()
                raise
            delta = store.commit()
            metrics = StateOperatorProgress(
                "aggregate",
                len(store),
                len(delta.puts),
                len(delta.removes),
                0,
                store.estimated_bytes(),
            )
            return out, metrics, delta
        out = partial if partial is not None else pl.DataFrame(schema=self.partial_schema)
        for op in self.plan.post_ops:
            out = op.apply(out)
        return out, None, None

    def _driver_inline(self, partial: pl.DataFrame | None) -> bool:
        """Small driver work runs in the event loop: a thread hop would cost more."""
        if self.options.output_mode == "complete" or has_user_code(self.plan.post_ops):
            return False
        return partial is None or partial.height <= INLINE_MAX_ROWS

    async def _write_state(self, delta: StateDelta) -> None:
        files, agg = self.state_files, self.agg_state
        if files is not None and agg is not None:
            await trio.to_thread.run_sync(files.write, agg.store, delta)

    async def _log_offsets(self, entry: OffsetEntry, timer: BatchTimer, done: trio.Event) -> None:
        if self.checkpoint is None:
            raise RuntimeError("the engine is not prepared")
        t0 = trio.current_time()
        await trio.to_thread.run_sync(self.checkpoint.write_offsets, entry)
        timer.add("offsets_commit", trio.current_time() - t0)
        done.set()

    async def _run_batch(
        self,
        entry: OffsetEntry,
        latest: Mapping[str, int],
        timer: BatchTimer,
        *,
        replay: bool,
        log_offsets: bool = False,
    ) -> None:
        """Run one batch: tasks, driver, state files and sink, then its commit."""
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("the engine is not prepared")
        ranges = entry.sources[0]
        wm = entry.watermark_ms
        t0 = trio.current_time()
        logged = trio.Event()
        async with trio.open_nursery() as batch_nursery:
            # The offsets entry becomes durable while the tasks read and compute:
            # nothing the batch does is visible (state files, sink) before it is.
            if log_offsets:
                batch_nursery.start_soon(self._log_offsets, entry, timer, logged)
            else:
                logged.set()
            results = await self._run_tasks(ranges, wm)
            frames = [r.frame for r in results]
            partial = pl.concat(frames, how="vertical") if frames else None
            stats = EventTimeStats()
            dropped = 0
            for r in results:
                stats.add(
                    r.event_time.min, r.event_time.max, r.event_time.total, r.event_time.count
                )
                dropped += r.dropped_by_watermark
            if self._driver_inline(partial):
                out, state_metrics, delta = self._driver(partial, wm)
            else:
                out, state_metrics, delta = await trio.to_thread.run_sync(self._driver, partial, wm)
            await logged.wait()
        t1 = trio.current_time()
        timer.add("processing", t1 - t0)
        ctx = BatchContext(entry.batch_id, entry.timestamp_ms, self.options.output_mode, replay)
        # The state files and the sink are independent; both must be done before the commit.
        async with trio.open_nursery() as batch_nursery:
            if delta is not None:
                batch_nursery.start_soon(self._write_state, delta)
            sink_state = await self.sink.add_batch(out, ctx)
        timer.add("sink", trio.current_time() - t1)
        if self.tracker is not None:
            self.tracker.observe(stats.max)
        commit = CommitEntry(
            entry.batch_id,
            self.tracker.max_event_time if self.tracker is not None else None,
            sink_state,
        )
        self.current.update(entry.end_offsets()[0])
        self.last_batch_watermark = wm
        if state_metrics is not None:
            state_metrics.num_rows_dropped_by_watermark = dropped
        source_report = (
            self.source.description,
            dict(ranges),
            dict(latest) or {p: e for p, (_, e) in ranges.items()},
        )

        def report(now: float) -> QueryProgress:
            if self.recorder is None:
                raise RuntimeError("no progress recorder")
            return self.recorder.finish(
                timer,
                now=now,
                wall_ms=self.wall_clock(),
                batch_id=entry.batch_id,
                sources=[source_report],
                event_time=(stats.min, stats.max, stats.avg),
                watermark_ms=wm,
                state_operators=[state_metrics] if state_metrics is not None else [],
                sink_description=self.sink.description,
                num_output_rows=out.height,
                dropped_by_watermark=dropped,
                replayed=replay,
            )

        await self._commit(commit, timer, report)

    async def _commit(
        self,
        commit: CommitEntry,
        timer: BatchTimer,
        report: Callable[[float], QueryProgress],
    ) -> None:
        """Write ``commits/<batch>``, purge old entries, publish the progress."""
        checkpoint = self.checkpoint
        if checkpoint is None:
            raise RuntimeError("the engine is not prepared")
        t0 = trio.current_time()
        await trio.to_thread.run_sync(checkpoint.write_commit, commit)
        self.committed_batch = commit.batch_id
        if commit.batch_id % 10 == 0:
            await trio.to_thread.run_sync(self._purge, checkpoint)
        timer.add("commit", trio.current_time() - t0)
        progress = report(trio.current_time())
        self.recent_progress.append(progress)
        self._emit("on_query_progress", progress)
        self._notify()

    def _purge(self, checkpoint: CheckpointDirectory) -> None:
        oldest = checkpoint.purge(self.options.min_batches_to_retain)
        if self.state_files is not None:
            self.state_files.purge(oldest + 1)


__all__ = [
    "MicroBatchEngine",
    "QueryOptions",
    "QueryStartedEvent",
    "QueryTerminatedEvent",
    "StateStore",
    "StreamingQueryListener",
]
