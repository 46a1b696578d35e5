"""Benchmark modules for the framework tests: one per outcome."""

from __future__ import annotations

from bench.peers import Unavailable
from bench.report import Result, result

MODE = {"outcome": "ok"}
LIMITS = {"speed_mb_s": "loopback_mb_s"}


def run(quick: bool = False) -> list[Result]:
    """A fake benchmark.

    Its first paragraph is the report's "about" line."""
    if MODE["outcome"] == "unavailable":
        raise Unavailable("not installed here")
    if MODE["outcome"] == "fail":
        raise RuntimeError("boom")
    return [
        result("speed_mb_s", 50.0, "MB/s"),
        result("latency_p50_ms", 2.0, "ms", samples=[1.0, 2.0, 3.0]),
    ]
