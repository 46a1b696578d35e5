"""Small statistics for benchmark samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

# Percentiles kept for a CDF: every percent, then finer towards the tail.
CDF_QUANTILES: tuple[float, ...] = (
    *(float(q) for q in range(0, 100)),
    99.5,
    99.9,
    99.99,
    100.0,
)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; samples need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    return _percentile_sorted(sorted(samples), q)


def _percentile_sorted(ordered: Sequence[float], q: float) -> float:
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def cdf(samples: Sequence[float]) -> list[tuple[float, float]]:
    """``(percentile, value)`` pairs at CDF_QUANTILES: a compact, plottable summary of
    any number of samples (empty for no samples)."""
    if not samples:
        return []
    ordered = sorted(samples)
    return [(q, _percentile_sorted(ordered, q)) for q in CDF_QUANTILES]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Count, min, p50, p90, p99, p99.9 and max of the samples."""
    if not samples:
        return {"count": 0.0}
    ordered = sorted(samples)
    return {
        "count": float(len(ordered)),
        "min": ordered[0],
        "p50": _percentile_sorted(ordered, 50),
        "p90": _percentile_sorted(ordered, 90),
        "p99": _percentile_sorted(ordered, 99),
        "p99.9": _percentile_sorted(ordered, 99.9),
        "max": ordered[-1],
    }
