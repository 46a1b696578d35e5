"""Benchmark results: the record type, progress lines and the printed table.

A benchmark module's ``run(quick: bool) -> list[Result]`` returns one
``Result`` per figure. ``samples`` is optional: raw measurements (in the
result's unit, e.g. every latency in ms) from which the Markdown report draws
a CDF. ``--json FILE`` writes only ``{"name", "value", "unit"}``; the dated
report keeps a down-sampled CDF of the samples instead of all of them.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict


class Result(TypedDict):
    name: str
    value: float
    unit: str
    samples: NotRequired[list[float]]


def result(name: str, value: float, unit: str, *, samples: Sequence[float] | None = None) -> Result:
    """A figure; ``samples`` (same unit as ``value``) let the report draw a CDF."""
    out: Result = {"name": name, "value": float(value), "unit": unit}
    if samples is not None:
        out["samples"] = [float(s) for s in samples]
    return out


def coerce(raw: Mapping[str, Any]) -> Result:
    """A Result from a module's plain dict (older modules return ``dict[str, object]``)."""
    out = result(str(raw["name"]), float(raw["value"]), str(raw["unit"]))
    samples = raw.get("samples")
    if isinstance(samples, list):
        out["samples"] = [float(s) for s in samples]
    return out


_section_started = time.monotonic()


def start_section() -> None:
    """Reset the clock that ``progress`` lines show (the runner calls it per benchmark)."""
    global _section_started
    _section_started = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr (time since the benchmark started), so stdout stays
    the table."""
    elapsed = time.monotonic() - _section_started
    print(f"  .. [{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def print_table(title: str, results: Iterable[Mapping[str, Any]]) -> None:
    rows = [coerce(r) for r in results]
    width = max([len(r["name"]) for r in rows] + [10])
    print(f"\n{title}")
    print(f"{'metric':<{width}}  {'value':>14}  unit")
    print(f"{'-' * width}  {'-' * 14}  {'-' * 10}")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['value']:>14,.3f}  {r['unit']}")
    sys.stdout.flush()


def plain(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``{"name", "value", "unit"}`` objects of DESIGN §12 (samples dropped)."""
    out: list[dict[str, Any]] = []
    for r in results:
        c = coerce(r)
        value: float | None = None if math.isnan(c["value"]) else c["value"]
        out.append({"name": c["name"], "value": value, "unit": c["unit"]})
    return out


def write_json(path: Path, results: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain(results), indent=2) + "\n")
