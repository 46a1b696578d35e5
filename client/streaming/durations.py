"""Durations as integer milliseconds: ``"10 seconds"``, ``"1m"``, ``500``, ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS: dict[str, int] = {
    "ms": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
}

_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*")

Duration = str | int | timedelta


def parse_duration(value: Duration, *, what: str = "duration", allow_zero: bool = True) -> int:
    """Milliseconds of ``value``.

    Accepts an int (milliseconds), a ``timedelta``, or a string of one or more
    ``<number> <unit>`` parts (``"1 minute"``, ``"10s"``, ``"1h 30m"``, ``"500 ms"``;
    the units of Spark's interval strings). Raises ``ValueError``/``TypeError``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, timedelta):
        ms = round(value.total_seconds() * 1000)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("interval "):
            text = text[len("interval ") :]
        if not text:
            raise ValueError(f"{what}: empty duration string")
        pos = 0
        total = 0.0
        while pos < len(text):
            m = _PART.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"{what}: cannot parse duration {value!r}")
            unit = _UNITS.get(m.group(2))
            if unit is None:
                raise ValueError(f"{what}: unknown unit {m.group(2)!r} in {value!r}")
            total += float(m.group(1)) * unit
            pos = m.end()
        ms = round(total)
    else:
        raise TypeError(f"{what} must be a str, int (ms) or timedelta, got {value!r}")
    if ms < 0 or (ms == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return ms
