"""Benchmark results: the record type, progress lines and the printed table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TypedDict


class Result(TypedDict):
    name: str
    value: float
    unit: str


def result(name: str, value: float, unit: str) -> Result:
    return {"name": name, "value": float(value), "unit": unit}


def progress(message: str) -> None:
    """One progress line on stderr, so stdout stays the table."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def print_table(title: str, results: list[Result]) -> None:
    width = max([len(r["name"]) for r in results] + [10])
    print(f"\n{title}")
    print(f"{'metric':<{width}}  {'value':>14}  unit")
    print(f"{'-' * width}  {'-' * 14}  {'-' * 10}")
    for r in results:
        print(f"{r['name']:<{width}}  {r['value']:>14,.3f}  {r['unit']}")
    sys.stdout.flush()


def write_json(path: Path, results: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
