"""The stateful aggregation + watermark against a brute-force model.

For random batches of (key, event time) the task side (late-row filter, window
assignment, partial aggregation) and the driver side (state merge, output
mode, eviction) must emit per batch exactly what a model computes from all
rows seen so far: in append mode each window once, when the watermark passes
its end; in update mode the windows the batch touched; in complete mode all.
Restarts (state written to files and loaded back) happen at random points.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from client.streaming import functions as F
from client.streaming.plan import (
    Aggregate,
    AggregationState,
    QueryPlan,
    WithWatermark,
    analyze,
    run_pipeline,
)
from client.streaming.state import StateFiles, StateStore
from client.streaming.watermark import WatermarkTracker
from client.streaming.windows import SessionWindow, TimeWindow, sessionize, window_starts

SCHEMA = {"k": pl.Utf8(), "t": pl.Int64()}

events = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 120))
batches = st.lists(st.lists(events, max_size=8), min_size=1, max_size=7)
window_specs = st.one_of(
    st.builds(
        lambda size, ratio: TimeWindow("t", size, max(1, size // ratio)),
        st.integers(2, 30),
        st.sampled_from([1, 2, 3]),
    ),
    st.builds(lambda gap: SessionWindow("t", gap), st.integers(1, 20)),
)


def model_outputs(
    all_batches: list[list[tuple[str, int]]],
    spec: TimeWindow | SessionWindow,
    delay: int,
    mode: str,
) -> list[list[tuple[Any, ...]]]:
    kept: list[tuple[int, str, int]] = []
    emitted: set[tuple[Any, ...]] = set()
    seen_max: int | None = None
    out: list[list[tuple[Any, ...]]] = []
    for b, batch in enumerate(all_batches):
        wm = None if seen_max is None else seen_max - delay
        new = [(k, t) for k, t in batch if wm is None or t >= wm]
        kept.extend((b, k, t) for k, t in new)
        # every group: (key, start, end) -> (count, touched by this batch)
        groups: dict[tuple[Any, ...], list[int]] = {}
        if isinstance(spec, TimeWindow):
            for bb, k, t in kept:
                for s in window_starts(t, spec.size_ms, spec.every_ms):
                    g = groups.setdefault((k, s, s + spec.size_ms), [0, 0])
                    g[0] += 1
                    g[1] |= bb == b
        else:
            for k in sorted({k for _, k, _ in kept}):
                times = [(bb, t) for bb, kk, t in kept if kk == k]
                for s, e in sessionize([t for _, t in times], spec.gap_ms):
                    inside = [bb for bb, t in times if s <= t < e]
                    groups[(k, s, e)] = [len(inside), int(b in inside)]
        if mode == "complete":
            rows = [(*g, n) for g, (n, _) in groups.items()]
        elif mode == "update":
            rows = [(*g, n) for g, (n, touched) in groups.items() if touched]
        else:
            rows = [
                (*g, n)
                for g, (n, _) in groups.items()
                if wm is not None and g[2] <= wm and g not in emitted
            ]
            emitted.update(r[:3] for r in rows)
        out.append(sorted(rows))
        top = max((t for _, t in batch), default=None)
        if top is not None and (seen_max is None or top > seen_max):
            seen_max = top
    return out


def engine_outputs(
    all_batches: list[list[tuple[str, int]]],
    spec: TimeWindow | SessionWindow,
    delay: int,
    mode: str,
    restarts: set[int],
) -> list[list[tuple[Any, ...]]]:
    plan = QueryPlan(
        pre_ops=(WithWatermark("t", delay),),
        aggregate=Aggregate(("k",), spec, 1, (F.count().alias("n"),)),
    )
    partial_schema, out_schema = analyze(plan, SCHEMA, mode)
    assert list(out_schema) == ["k", spec.name, "n"]
    evict = plan.evicts_by_watermark(mode)
    directory = tempfile.mkdtemp(prefix="rivulet-agg-model-")
    try:
        files = StateFiles(directory, snapshot_interval=2)

        def make(store: StateStore) -> AggregationState:
            return AggregationState(plan.aggregate, mode, evict=evict, store=store)  # type: ignore[arg-type]

        state = make(StateStore())
        tracker = WatermarkTracker(delay)
        out = []
        for b, batch in enumerate(all_batches):
            if b in restarts:
                state = make(files.load(state.store.version))
            wm = tracker.watermark
            df = pl.DataFrame(
                {"k": [k for k, _ in batch], "t": [t for _, t in batch]}, schema=SCHEMA
            )
            res = run_pipeline(plan, df, wm)
            assert res.dropped_by_watermark == sum(1 for _, t in batch if wm is not None and t < wm)
            frame = state.process(res.frame if res.frame.height else None, wm, partial_schema)
            files.write(state.store, state.store.commit())
            tracker.observe(res.event_time.max)
            rows = [
                (r["k"], r[spec.name]["start"], r[spec.name]["end"], r["n"])
                for r in frame.to_dicts()
            ]
            # emitted rows are sorted by window start, then key
            assert [(r[1], r[0]) for r in rows] == sorted((r[1], r[0]) for r in rows)
            out.append(sorted(rows))
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@settings(max_examples=120, deadline=None)
@given(
    data=batches,
    spec=window_specs,
    delay=st.integers(0, 15),
    mode=st.sampled_from(["append", "update", "complete"]),
    idle=st.integers(0, 2),
    restarts=st.sets(st.integers(1, 8), max_size=3),
)
def test_aggregation_matches_model(
    data: list[list[tuple[str, int]]],
    spec: TimeWindow | SessionWindow,
    delay: int,
    mode: str,
    idle: int,
    restarts: set[int],
) -> None:
    all_batches = data + [[] for _ in range(idle)]
    assert engine_outputs(all_batches, spec, delay, mode, restarts) == model_outputs(
        all_batches, spec, delay, mode
    )


def test_append_emits_each_window_once_when_watermark_passes() -> None:
    spec = TimeWindow("t", 10, 10)
    batches_ = [[("a", 1), ("a", 5), ("b", 12)], [("a", 25)], [], [("a", 3)], []]
    out = engine_outputs(batches_, spec, 5, "append", set())
    # batch 1 runs with watermark 12 - 5 = 7: nothing closed yet;
    # batch 2 with 25 - 5 = 20: [0,10) and [10,20) close; a@3 in batch 3 is late.
    assert out == [[], [], [("a", 0, 10, 2), ("b", 10, 20, 1)], [], []]


def test_session_merge_across_batches() -> None:
    spec = SessionWindow("t", 5)
    out = engine_outputs([[("a", 0), ("a", 20)], [("a", 4), ("a", 16)]], spec, 100, "update", set())
    # a@4 extends [0,5) to [0,9); a@16 merges into [16,25) which absorbs a@20's session.
    assert out == [[("a", 0, 5, 1), ("a", 20, 25, 1)], [("a", 0, 9, 2), ("a", 16, 25, 2)]]
    # in complete mode the session that started at 20 must be gone from the state
    out = engine_outputs([[("a", 20)], [("a", 16)]], spec, 100, "complete", {1})
    assert out == [[("a", 20, 25, 1)], [("a", 16, 25, 2)]]


def test_state_evicted_by_watermark() -> None:
    plan = QueryPlan(
        pre_ops=(WithWatermark("t", 0),),
        aggregate=Aggregate(("k",), TimeWindow("t", 10, 10), 1, (F.count().alias("n"),)),
    )
    partial_schema, _ = analyze(plan, SCHEMA, "update")
    state = AggregationState(plan.aggregate, "update", evict=True, store=StateStore())  # type: ignore[arg-type]
    df = pl.DataFrame({"k": ["a", "b", "a"], "t": [1, 15, 33]}, schema=SCHEMA)
    state.process(run_pipeline(plan, df, None).frame, None, partial_schema)
    assert len(state.store) == 3
    state.process(None, 20, partial_schema)
    assert len(state.store) == 1  # [0,10) and [10,20) evicted; [30,40) kept
    assert state.store.commit().removes


class AggregationMachine(RuleBasedStateMachine):
    """The same comparison as a state machine: batches, idle (no-data) batches and
    restarts from the state files in any order; after every batch the rows the
    engine emitted equal the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="rivulet-agg-machine-")
        self.history: list[list[tuple[str, int]]] = []
        self.emitted: list[list[tuple[Any, ...]]] = []

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @initialize(
        spec=window_specs,
        delay=st.integers(0, 15),
        mode=st.sampled_from(["append", "update", "complete"]),
    )
    def setup(self, spec: TimeWindow | SessionWindow, delay: int, mode: str) -> None:
        self.spec, self.delay, self.mode = spec, delay, mode
        self.plan = QueryPlan(
            pre_ops=(WithWatermark("t", delay),),
            aggregate=Aggregate(
                ("k",), spec, 1, (F.count().alias("n"), F.max("t").alias("latest"))
            ),
        )
        self.partial_schema, _ = analyze(self.plan, SCHEMA, mode)
        self.files = StateFiles(self.directory, snapshot_interval=3)
        self.tracker = WatermarkTracker(delay)
        self.state = self._state(StateStore())

    def _state(self, store: StateStore) -> AggregationState:
        return AggregationState(
            self.plan.aggregate,  # type: ignore[arg-type]
            self.mode,
            evict=self.plan.evicts_by_watermark(self.mode),
            store=store,
        )

    @rule(batch=st.lists(events, max_size=6))
    def run_batch(self, batch: list[tuple[str, int]]) -> None:
        wm = self.tracker.watermark
        df = pl.DataFrame({"k": [k for k, _ in batch], "t": [t for _, t in batch]}, schema=SCHEMA)
        res = run_pipeline(self.plan, df, wm)
        frame = self.state.process(res.frame if res.frame.height else None, wm, self.partial_schema)
        self.files.write(self.state.store, self.state.store.commit())
        self.tracker.observe(res.event_time.max)
        self.history.append(batch)
        self.emitted.append(
            sorted(
                (r["k"], r[self.spec.name]["start"], r[self.spec.name]["end"], r["n"])
                for r in frame.to_dicts()
            )
        )
        for r in frame.to_dicts():  # max(t) merges like count does
            assert self.spec.name in r and r["latest"] is not None

    @rule()
    def idle_batch(self) -> None:
        self.run_batch([])

    @rule()
    def restart(self) -> None:
        self.state = self._state(self.files.load(self.state.store.version))

    @invariant()
    def emitted_like_the_model(self) -> None:
        if self.history:
            assert self.emitted == model_outputs(self.history, self.spec, self.delay, self.mode)


AggregationMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=12, deadline=None
)
TestAggregationMachine = AggregationMachine.TestCase
