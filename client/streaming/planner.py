"""Choosing each batch's offset ranges (sans-IO).

Partitions are identified by their names. Given where
the query stands (``start``) and what the sources have (``latest``), the
planner picks ``[start, end)`` per partition. With a record limit it spreads
the limit over the partitions in proportion to how far behind each one is
(Kafka source's ``maxOffsetsPerTrigger`` rule in Spark), hands out the rounding
remainder by largest fraction (ties by partition order), and never exceeds a
partition's backlog — so the plan is a deterministic function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PartitionId = str
Ranges = dict[PartitionId, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch's ranges and whether any of them holds data."""

    ranges: Ranges

    @property
    def num_records(self) -> int:
        return sum(end - start for start, end in self.ranges.values())

    @property
    def has_data(self) -> bool:
        return any(end > start for start, end in self.ranges.values())

    def ends(self) -> dict[PartitionId, int]:
        return {p: end for p, (_, end) in self.ranges.items()}


def plan_batch(
    start: Mapping[PartitionId, int],
    latest: Mapping[PartitionId, int],
    max_records: int | None = None,
    target: Mapping[PartitionId, int] | None = None,
) -> Plan:
    """The ranges of the next batch.

    ``start`` holds each known partition's next offset; partitions only in
    ``latest`` start at 0 (new partitions are read from their beginning).
    ``latest`` below ``start`` (a source that went back) yields an empty range.
    ``target`` (available-now) caps each partition's end.
    """
    if max_records is not None and max_records < 1:
        raise ValueError("max_records must be >= 1")
    keys = sorted(set(start) | set(latest))
    bounds: dict[PartitionId, tuple[int, int]] = {}
    for p in keys:
        s = start.get(p, 0)
        e = max(s, latest.get(p, s))
        if target is not None:
            e = max(s, min(e, target.get(p, s)))
        bounds[p] = (s, e)
    total = sum(e - s for s, e in bounds.values())
    if max_records is None or total <= max_records:
        return Plan(dict(bounds))
    # Proportional shares of the limit, remainder by largest fractional part.
    shares: dict[PartitionId, int] = {}
    fractions: list[tuple[int, int, PartitionId]] = []
    for i, p in enumerate(keys):
        s, e = bounds[p]
        lag = e - s
        whole, rest = divmod(lag * max_records, total)
        shares[p] = whole
        if lag > whole:
            fractions.append((-rest, i, p))
    left = max_records - sum(shares.values())
    fractions.sort()
    for _, _, p in fractions:
        if left <= 0:
            break
        shares[p] += 1
        left -= 1
    return Plan({p: (bounds[p][0], bounds[p][0] + shares[p]) for p in keys})
