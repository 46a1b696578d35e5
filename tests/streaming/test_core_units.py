"""Sans-IO cores: durations, windows, planner, trigger policy, checkpoint decisions,
watermark tracker and progress."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.streaming.checkpoint import (
    CheckpointError,
    RecoveryPlan,
    purge_plan,
    recovery_plan,
)
from client.streaming.durations import parse_duration
from client.streaming.planner import plan_batch
from client.streaming.progress import ProgressRecorder
from client.streaming.triggers import (
    AvailableNow,
    Decision,
    Once,
    ProcessingTime,
    TriggerPolicy,
    make_trigger,
)
from client.streaming.watermark import WatermarkTracker
from client.streaming.windows import (
    WINDOW_END,
    WINDOW_START,
    Session,
    assign_sessions,
    assign_time_windows,
    merge_sessions,
    session_window,
    sessionize,
    window,
    window_starts,
)

# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10 seconds", 10_000),
        ("1 minute", 60_000),
        ("1m", 60_000),
        ("500ms", 500),
        ("1h 30m", 5_400_000),
        ("interval 2 days", 172_800_000),
        ("1.5 s", 1500),
        (250, 250),
        (timedelta(seconds=3), 3000),
    ],
)
def test_parse_duration(text: object, ms: int) -> None:
    assert parse_duration(text) == ms  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "ten seconds", "5 parsecs", "5", -1])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_parse_duration_types() -> None:
    with pytest.raises(TypeError):
        parse_duration(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_duration(True)
    with pytest.raises(ValueError):
        parse_duration(0, allow_zero=False)


# -- windows ------------------------------------------------------------------------------


def test_window_specs() -> None:
    w = window("ts", "1 minute", "1 second")
    assert (w.size_ms, w.every_ms, w.windows_per_row) == (60_000, 1000, 60)
    assert window("ts", "10s").every_ms == 10_000
    with pytest.raises(ValueError):
        window("ts", "1s", "2s")
    with pytest.raises(ValueError):
        window("ts", "10s", "5s", offset="5s")
    with pytest.raises(TypeError):
        window("", "1s")
    assert session_window("ts", "5 min").gap_ms == 300_000
    assert window("ts", "1s").alias("w").name == "w"


def test_window_starts_examples() -> None:
    assert window_starts(12, 10, 10) == [10]
    assert window_starts(12, 10, 5) == [5, 10]
    assert window_starts(10, 10, 5) == [5, 10]
    assert window_starts(-3, 10, 10) == [-10]
    assert window_starts(12, 10, 10, 3) == [3]


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(-5_000, 50_000), min_size=0, max_size=30),
    size=st.integers(1, 40),
    ratio=st.integers(1, 5),
    offset=st.integers(0, 100),
    datetime_col=st.booleans(),
)
def test_time_windows_match_specification(
    times: list[int], size: int, ratio: int, offset: int, datetime_col: bool
) -> None:
    size_ms = size * 100
    every_ms = max(1, size_ms // ratio)
    offset_ms = offset % every_ms
    spec = window("t", size_ms, every_ms, offset_ms)
    col = pl.Series("t", times, dtype=pl.Int64)
    df = pl.DataFrame([col.cast(pl.Datetime("ms")) if datetime_col else col])
    out = assign_time_windows(df.with_row_index("i"), spec)
    got = sorted(
        zip(out["i"].to_list(), out[WINDOW_START].to_list(), out[WINDOW_END].to_list(), strict=True)
    )
    want = sorted(
        (i, s, s + size_ms)
        for i, t in enumerate(times)
        for s in window_starts(t, size_ms, every_ms, offset_ms)
    )
    assert got == want


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 200)), max_size=30),
    gap=st.integers(1, 30),
)
def test_sessions_vectorised_match_specification(events: list[tuple[str, int]], gap: int) -> None:
    df = pl.DataFrame(
        {"k": [k for k, _ in events], "t": [t for _, t in events]},
        schema={"k": pl.Utf8, "t": pl.Int64},
    )
    out = assign_sessions(df, session_window("t", gap), ["k"])
    agg = out.group_by(["k", "__session"]).agg(
        pl.col("__event_time").min().alias("s"), (pl.col("__event_time").max() + gap).alias("e")
    )
    got = sorted(zip(agg["k"].to_list(), agg["s"].to_list(), agg["e"].to_list(), strict=True))
    want = sorted(
        (k, s, e) for k in "ab" for s, e in sessionize([t for kk, t in events if kk == k], gap)
    )
    assert got == want


@settings(max_examples=80, deadline=None)
@given(
    a=st.lists(st.integers(0, 100), max_size=12),
    b=st.lists(st.integers(0, 100), max_size=12),
    gap=st.integers(1, 20),
)
def test_merge_sessions_is_sessionize_of_union(a: list[int], b: list[int], gap: int) -> None:
    def as_sessions(times: list[int]) -> list[Session]:
        return [
            Session(s, e, (sum(1 for t in times if s <= t < e),)) for s, e in sessionize(times, gap)
        ]

    merged = merge_sessions(as_sessions(a), as_sessions(b), lambda x, y: (x[0] + y[0],))
    assert [(s.start, s.end, s.buffers[0]) for s in merged] == [
        (s, e, sum(1 for t in a + b if s <= t < e)) for s, e in sessionize(a + b, gap)
    ]


# -- planner ------------------------------------------------------------------------------


def test_plan_without_limit_takes_everything() -> None:
    plan = plan_batch({"0": 5, "1": 0}, {"0": 9, "1": 3, "2": 4})
    assert plan.ranges == {"0": (5, 9), "1": (0, 3), "2": (0, 4)}
    assert plan.num_records == 11 and plan.has_data


def test_plan_spreads_limit_by_backlog() -> None:
    plan = plan_batch({"a": 0, "b": 0, "c": 0}, {"a": 100, "b": 50, "c": 0}, max_records=30)
    assert plan.ranges == {"a": (0, 20), "b": (0, 10), "c": (0, 0)}


def test_plan_source_went_back() -> None:
    assert plan_batch({"a": 10}, {"a": 3}).ranges == {"a": (10, 10)}


@settings(max_examples=200, deadline=None)
@given(
    lags=st.dictionaries(
        st.sampled_from("abcdefg"), st.tuples(st.integers(0, 1000), st.integers(0, 500))
    ),
    limit=st.one_of(st.none(), st.integers(1, 2000)),
    cap=st.booleans(),
)
def test_plan_properties(lags: dict[str, tuple[int, int]], limit: int | None, cap: bool) -> None:
    start = {p: s for p, (s, _) in lags.items()}
    latest = {p: s + lag for p, (s, lag) in lags.items()}
    target = {p: s + lag // 2 for p, (s, lag) in lags.items()} if cap else None
    plan = plan_batch(start, latest, limit, target)
    bound = target or latest
    total = sum(bound[p] - start[p] for p in lags)
    assert plan.num_records == (total if limit is None else min(limit, total))
    for p, (s, e) in plan.ranges.items():
        assert s == start[p] <= e <= bound[p]
    assert plan == plan_batch(dict(reversed(list(start.items()))), latest, limit, target)


# -- triggers -----------------------------------------------------------------------------


def test_make_trigger() -> None:
    assert make_trigger("2 seconds") == ProcessingTime(2000)
    assert make_trigger(once=True) == Once()
    assert make_trigger(available_now=True) == AvailableNow()
    with pytest.raises(ValueError):
        make_trigger()
    with pytest.raises(ValueError):
        make_trigger("1s", once=True)


def test_processing_time_policy() -> None:
    policy = TriggerPolicy(ProcessingTime(1000))
    assert policy.next_trigger_at(5.0) == 5.0
    policy.triggered(5.0)
    assert policy.next_trigger_at(5.2) == 6.0
    assert policy.next_trigger_at(7.5) == 7.5  # the batch overran: next one at once
    assert policy.decide(has_data=False, watermark_moved=False, caught_up=False) is Decision.SKIP
    assert policy.decide(has_data=False, watermark_moved=True, caught_up=False) is Decision.RUN
    assert policy.decide(has_data=True, watermark_moved=False, caught_up=False) is Decision.RUN
    assert not policy.bounded and policy.limits_batches


def test_once_policy() -> None:
    policy = TriggerPolicy(Once())
    assert not policy.limits_batches and policy.bounded
    assert policy.decide(has_data=True, watermark_moved=False, caught_up=True) is Decision.RUN
    policy.ran()
    assert policy.decide(has_data=True, watermark_moved=True, caught_up=True) is Decision.STOP
    assert (
        TriggerPolicy(Once()).decide(has_data=False, watermark_moved=False, caught_up=True)
        is Decision.STOP
    )


def test_available_now_policy() -> None:
    policy = TriggerPolicy(AvailableNow())
    assert policy.decide(has_data=True, watermark_moved=False, caught_up=False) is Decision.RUN
    assert policy.decide(has_data=False, watermark_moved=True, caught_up=True) is Decision.RUN
    assert policy.decide(has_data=False, watermark_moved=False, caught_up=True) is Decision.STOP
    assert policy.decide(has_data=False, watermark_moved=False, caught_up=False) is Decision.SKIP


# -- checkpoint decisions ----------------------------------------------------------------


def test_recovery_plan() -> None:
    assert recovery_plan([], []) == RecoveryPlan(-1, (), 0)
    assert recovery_plan([0], []) == RecoveryPlan(-1, (0,), 1)
    assert recovery_plan([3, 4, 5], [3, 4, 5]) == RecoveryPlan(5, (), 6)
    assert recovery_plan([4, 5, 6], [3, 4, 5]) == RecoveryPlan(5, (6,), 7)
    with pytest.raises(CheckpointError):
        recovery_plan([4, 5, 6, 7], [3, 4, 5])
    with pytest.raises(CheckpointError):
        recovery_plan([0, 1], [])
    with pytest.raises(CheckpointError):
        recovery_plan([1], [1, 2])


def test_purge_plan() -> None:
    assert purge_plan([5, 1, 3, 2, 4], 2) == [1, 2, 3]
    assert purge_plan([1], 3) == []
    with pytest.raises(ValueError):
        purge_plan([1], 0)


# -- watermark and progress ---------------------------------------------------------------


def test_watermark_tracker() -> None:
    t = WatermarkTracker(10)
    assert t.watermark is None
    assert not t.observe(None)
    assert t.observe(100) and t.watermark == 90
    assert not t.observe(50) and t.watermark == 90  # never moves back
    assert t.observe(120) and t.watermark == 110
    assert WatermarkTracker.is_late(109, 110) and not WatermarkTracker.is_late(110, 110)
    assert not WatermarkTracker.is_late(0, None)
    with pytest.raises(ValueError):
        WatermarkTracker(-1)


def test_progress_recorder() -> None:
    rec = ProgressRecorder("qid", "rid", "q")
    timer = rec.start_trigger(10.0)
    timer.add("planning", 0.001)
    timer.add("sink", 0.5)
    with pytest.raises(ValueError):
        timer.add("nope", 1)
    p = rec.finish(
        timer,
        now=11.0,
        wall_ms=0,
        batch_id=3,
        sources=[("src", {"a": (0, 100), "b": (5, 5)}, {"a": 150, "b": 5})],
        event_time=(1000, 3000, 2000.0),
        watermark_ms=500,
        state_operators=[],
        sink_description="sink",
        num_output_rows=7,
        dropped_by_watermark=2,
    )
    assert p.batch_id == 3 and p.num_input_rows == 100
    assert p.processed_rows_per_second == pytest.approx(100.0)
    assert p.duration_ms["trigger_execution"] == pytest.approx(1000.0)
    assert p.duration_ms["planning"] == pytest.approx(1.0)
    assert p.sources[0].lag == {"a": 50, "b": 0} and p.sources[0].max_lag == 50
    assert p.event_time["watermark"] == "1970-01-01T00:00:00.500+00:00"
    assert p.event_time["avg"] == "1970-01-01T00:00:02.000+00:00"
    assert p.sink.num_output_rows == 7 and p.num_rows_dropped_by_watermark == 2
    assert '"batch_id": 3' in p.json
    timer = rec.start_trigger(12.0)
    p2 = rec.finish(
        timer,
        now=12.5,
        wall_ms=0,
        batch_id=4,
        sources=[("src", {"a": (100, 150)}, {"a": 150})],
        event_time=(None, None, None),
        watermark_ms=None,
        state_operators=[],
        sink_description="sink",
        num_output_rows=0,
        dropped_by_watermark=0,
    )
    assert p2.input_rows_per_second == pytest.approx(25.0)  # 50 rows over 2 s between triggers
    assert p2.event_time == {}
