"""A histogram cheap enough for every request, exported through prometheus_client.

``prometheus_client.Histogram`` takes a lock and walks its buckets on every
observation. The servers observe on their single event-loop thread, once per
request, so this one is a plain bucket array indexed by ``bisect`` (a few
hundred nanoseconds); it also keeps the minimum and maximum that
``coordinator stat`` prints. A collector turns it into a Prometheus histogram
at scrape time (``histogram_family``). Not thread-safe: observe and collect
from one thread (the servers' collectors run on their event loop).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily

#: Request latencies, in seconds: 50 microseconds to 10 seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Slow, rare operations (snapshots, state saves), in seconds: 1 millisecond to 2 minutes.
SLOW_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


class Histogram:
    """Counts of observations per bucket, with their count, sum, minimum and maximum."""

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        ordered = tuple(float(b) for b in bounds)
        if not ordered or list(ordered) != sorted(set(ordered)) or math.isinf(ordered[-1]):
            raise ValueError("bucket bounds must be finite, distinct and increasing")
        self.bounds = ordered
        # counts[i]: observations in (bounds[i-1], bounds[i]]; the last one is +Inf.
        self.counts = [0] * (len(ordered) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = 0.0
        self.max = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.sum += value

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: (upper bound ``le``, observations at or below it)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_le(bound), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


def _le(bound: float) -> str:
    # As prometheus_client renders its own bucket bounds ("5e-05", "0.005", "10.0").
    return repr(bound)


def merged(histograms: Iterable[Histogram]) -> tuple[int, float, float, float]:
    """(count, minimum, mean, maximum) over several histograms (zeros when empty)."""
    count = 0
    total = 0.0
    lo = math.inf
    hi = 0.0
    for h in histograms:
        if h.count:
            count += h.count
            total += h.sum
            lo = min(lo, h.min)
            hi = max(hi, h.max)
    if not count:
        return 0, 0.0, 0.0, 0.0
    return count, lo, total / count, hi


def histogram_family(
    name: str,
    documentation: str,
    series: Iterable[tuple[Sequence[str], Histogram]],
    labels: Sequence[str] = (),
) -> HistogramMetricFamily:
    """One Prometheus histogram family: a series per (label values, histogram)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, histogram in series:
        family.add_metric(list(values), histogram.cumulative(), histogram.sum)
    return family
