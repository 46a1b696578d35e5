"""The state behind ``/health``: named checks, each saying whether its part serves.

A service registers one check per component (the broker, the coordinator it
embeds, ...). A check is a function returning a ``CheckResult``: whether the
component serves, and a few facts worth showing an operator (ids, ports,
counts). The report is ``{"status": "ok" | "unavailable", <component>: {"ok":
bool, ...facts}}``; the status is ``ok`` only when every check passes (and at
least one is registered — nothing registered yet means still starting).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One component's health: serving or not, plus facts (JSON values)."""

    ok: bool
    facts: dict[str, Any] = field(default_factory=dict)


Check = Callable[[], CheckResult]


class Health:
    """Named health checks, evaluated when ``/health`` is asked (on the caller's thread)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) the check called ``name``."""
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(all healthy, the JSON document). A check that raises counts as failing."""
        body: dict[str, Any] = {}
        healthy = bool(self._checks)
        for name, check in list(self._checks.items()):
            try:
                result = check()
            except (AttributeError, LookupError, TypeError, ValueError) as exc:
                # A check reads state that may be half built during start-up or shutdown.
                logger.debug("health check %s failed: %r", name, exc)
                result = CheckResult(False, {"error": f"{type(exc).__name__}: {exc}"})
            healthy = healthy and result.ok
            body[name] = {"ok": result.ok, **result.facts}
        return healthy, {"status": "ok" if healthy else "unavailable", **body}
