"""Metrics, health and structured logs shared by the broker and the coordinator.

- ``Observability``: one service's metrics registry and health checks;
- ``MetricsServer``: the HTTP endpoint serving ``/metrics`` and ``/health``;
- ``Histogram``: a per-request latency histogram, exported at scrape time;
- ``JsonFormatter`` and ``configure_logging``: JSON-lines logs.

This package imports nothing else of Rivulet, so the coordinator may use it
(docs/architecture.md). ``docs/monitoring.md`` lists every metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.registry import CollectorRegistry

from client.observability.health import Check, CheckResult, Health
from client.observability.histogram import (
    LATENCY_BUCKETS,
    SLOW_BUCKETS,
    Histogram,
    histogram_family,
    merged,
)
from client.observability.http import MetricsServer
from client.observability.logs import JsonFormatter, configure_logging


@dataclass(slots=True)
class Observability:
    """What a service exports: its collectors and its health checks.

    Each server process has its own registry (never prometheus_client's global
    one), so several services in one process — a broker and the coordinator it
    embeds, or the brokers of a test — never clash.
    """

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())
    health: Health = field(default_factory=Health)

    def server(self, host: str, port: int) -> MetricsServer:
        """The HTTP endpoint for this registry and these checks."""
        return MetricsServer(self.registry, self.health, host=host, port=port)


__all__ = [
    "LATENCY_BUCKETS",
    "SLOW_BUCKETS",
    "Check",
    "CheckResult",
    "Health",
    "Histogram",
    "JsonFormatter",
    "MetricsServer",
    "Observability",
    "configure_logging",
    "histogram_family",
    "merged",
]
