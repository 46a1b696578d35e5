"""Streaming queries' progress as Prometheus metrics (opt-in).

Each completed batch's ``QueryProgress`` feeds counters (batches, input,
output and late rows), a batch-duration histogram and gauges of the last batch
(rates, watermark, state rows, per-partition source lag). Every series carries
the query's ``query_id`` (stable across restarts) and ``name``. Two ways in::

    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    query = stream.write_stream.to_memory("t").start()
    query.export_metrics(registry)             # on a running query

    writer.listener(StreamingMetrics.for_registry(registry))   # or before it starts

    start_http_server(8000, registry=registry)  # serve them (or any exporter)

One ``StreamingMetrics`` per registry serves any number of queries; it is a
``StreamingQueryListener`` (fed on each query's thread) and a collector (read
on the scraper's thread), so its state is guarded by a lock. Without a
registry, prometheus_client's global ``REGISTRY`` is used.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from client.observability import SLOW_BUCKETS, Histogram, histogram_family
from client.streaming.engine import (
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)
from client.streaming.progress import DURATION_KEYS, QueryProgress

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PREFIX = "rivulet_streaming_"
_LABELS = ["query_id", "name"]
# Batch durations: sub-millisecond batches of a few rows up to long catch-up batches.
BATCH_BUCKETS: tuple[float, ...] = (0.0005, *SLOW_BUCKETS)

_registries: weakref.WeakKeyDictionary[CollectorRegistry, StreamingMetrics] = (
    weakref.WeakKeyDictionary()
)
_registries_lock = threading.Lock()


@dataclass(slots=True)
class _QueryFigures:
    name: str
    active: bool = True
    batches: int = 0
    input_rows: int = 0
    output_rows: int = 0
    dropped_rows: int = 0
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    last: QueryProgress | None = None


class StreamingMetrics(StreamingQueryListener, Collector):
    """Exports the progress of every query it listens to (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._queries: dict[str, _QueryFigures] = {}
        (REGISTRY if registry is None else registry).register(self)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> StreamingMetrics:
        """The one instance exporting into ``registry`` (made and registered on first use)."""
        target = REGISTRY if registry is None else registry
        with _registries_lock:
            metrics = _registries.get(target)
            if metrics is None:
                metrics = _registries[target] = cls(target)
            return metrics

    # ------------------------------------------------------------ listener (query thread)

    def _figures(self, query_id: str, name: str | None) -> _QueryFigures:
        figures = self._queries.get(query_id)
        if figures is None:
            figures = self._queries[query_id] = _QueryFigures(name or "")
        return figures

    def on_query_started(self, event: QueryStartedEvent) -> None:
        with self._lock:
            self._figures(event.id, event.name).active = True

    def on_query_progress(self, progress: QueryProgress) -> None:
        with self._lock:
            figures = self._figures(progress.id, progress.name)
            figures.active = True
            figures.batches += 1
            figures.input_rows += progress.num_input_rows
            figures.output_rows += progress.sink.num_output_rows
            figures.dropped_rows += progress.num_rows_dropped_by_watermark
            figures.batch_seconds.observe(progress.duration_ms["trigger_execution"] / 1000.0)
            figures.last = progress

    def on_query_terminated(self, event: QueryTerminatedEvent) -> None:
        with self._lock:
            figures = self._queries.get(event.id)
            if figures is not None:
                figures.active = False

    # ------------------------------------------------------------ collector (scraper thread)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            queries = sorted(self._queries.items())
            snapshot = [
                (
                    [query_id, f.name],
                    f.active,
                    (f.batches, f.input_rows, f.output_rows, f.dropped_rows),
                    _copy(f.batch_seconds),
                    f.last,
                )
                for query_id, f in queries
            ]
        counters = [
            CounterMetricFamily(PREFIX + "batches", "Batches completed.", labels=_LABELS),
            CounterMetricFamily(
                PREFIX + "input_rows", "Rows read from the sources.", labels=_LABELS
            ),
            CounterMetricFamily(
                PREFIX + "output_rows", "Rows written to the sink.", labels=_LABELS
            ),
            CounterMetricFamily(
                PREFIX + "dropped_rows",
                "Rows dropped because they arrived behind the watermark.",
                labels=_LABELS,
            ),
        ]
        active = GaugeMetricFamily(
            PREFIX + "query_active", "1 while the query runs, 0 once it stopped.", labels=_LABELS
        )
        last_batch = GaugeMetricFamily(
            PREFIX + "last_batch_id", "Id of the last completed batch.", labels=_LABELS
        )
        input_rate = GaugeMetricFamily(
            PREFIX + "input_rows_per_second",
            "Input rate of the last batch: its rows over the time since the previous trigger.",
            labels=_LABELS,
        )
        processed_rate = GaugeMetricFamily(
            PREFIX + "processed_rows_per_second",
            "Processing rate of the last batch: its rows over its own duration.",
            labels=_LABELS,
        )
        phase = GaugeMetricFamily(
            PREFIX + "last_batch_phase_seconds",
            "Duration breakdown of the last batch (Spark's durationMs).",
            labels=[*_LABELS, "phase"],
        )
        watermark = GaugeMetricFamily(
            PREFIX + "watermark_seconds",
            "Event-time watermark after the last batch, as Unix time (only with a watermark).",
            labels=_LABELS,
        )
        state_rows = GaugeMetricFamily(
            PREFIX + "state_rows", "Rows held in operator state, all operators.", labels=_LABELS
        )
        state_bytes = GaugeMetricFamily(
            PREFIX + "state_memory_bytes",
            "Memory used by operator state, all operators.",
            labels=_LABELS,
        )
        lag = GaugeMetricFamily(
            PREFIX + "source_lag_messages",
            "Per source partition: latest available offset minus the last batch's end offset.",
            labels=[*_LABELS, "source", "partition"],
        )
        for values, is_active, totals, _, last in snapshot:
            for family, total in zip(counters, totals, strict=True):
                family.add_metric(values, total)
            active.add_metric(values, 1 if is_active else 0)
            if last is None:
                continue
            last_batch.add_metric(values, last.batch_id)
            input_rate.add_metric(values, last.input_rows_per_second)
            processed_rate.add_metric(values, last.processed_rows_per_second)
            for key in DURATION_KEYS:
                phase.add_metric([*values, key], last.duration_ms.get(key, 0.0) / 1000.0)
            mark = _unix_seconds(last.event_time.get("watermark"))
            if mark is not None:
                watermark.add_metric(values, mark)
            state_rows.add_metric(values, sum(op.num_rows_total for op in last.state_operators))
            state_bytes.add_metric(values, sum(op.memory_used_bytes for op in last.state_operators))
            for source in last.sources:
                for partition, behind in sorted(source.lag.items()):
                    lag.add_metric([*values, source.description, partition], behind)
        yield from counters
        yield from (active, last_batch, input_rate, processed_rate, phase, watermark)
        yield from (state_rows, state_bytes, lag)
        yield histogram_family(
            PREFIX + "batch_duration_seconds",
            "Duration of each batch, trigger to commit (Spark's triggerExecution).",
            ((values, histogram) for values, _, _, histogram, _ in snapshot),
            _LABELS,
        )


def _copy(histogram: Histogram) -> Histogram:
    """A copy to read outside the lock."""
    out = Histogram(histogram.bounds)
    out.counts = list(histogram.counts)
    out.count = histogram.count
    out.sum = histogram.sum
    out.min = histogram.min
    out.max = histogram.max
    return out


def _unix_seconds(text: object) -> float | None:
    """Unix seconds of an ISO-8601 time as progress reports print them (None if absent)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
