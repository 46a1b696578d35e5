"""The coordinator's metrics: what the server measures, and what a scrape reads.

Names follow ZooKeeper's Prometheus metrics where an equivalent exists
(``znode_count``, ``ephemerals_count``, ``watch_count``,
``num_alive_connections``, ``global_sessions``, ``outstanding_requests``,
``fsynctime``, ``snapshottime``), with the ``rivulet_coordinator_`` prefix and
seconds as the unit. docs/monitoring.md describes each one.

Two kinds of figures:

- *measured* as the server runs (``CoordinatorMetrics``): request latency per
  api, log sync and snapshot times. One histogram observation per request,
  on the event-loop thread;
- *read* at scrape time (``CoordinatorCollector``): counts and zxids, taken
  from the server's state by ``facts``. ``SERVER_STAT`` (``coordinator stat``)
  answers from the same ``facts`` and the same latency histograms, so both
  always agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from client.observability import (
    LATENCY_BUCKETS,
    SLOW_BUCKETS,
    Histogram,
    histogram_family,
    merged,
)
from coordinator.protocol import SERVER_VERSION, Api

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from coordinator.server import CoordinatorServer

PREFIX = "rivulet_coordinator_"
#: Label of requests whose api could not be read, or is not one of ours.
UNKNOWN_API = -1
_API_NAMES: dict[int, str] = {int(api): api.name.lower() for api in Api}
_API_NAMES[UNKNOWN_API] = "unknown"


class CoordinatorMetrics:
    """Figures measured as the server runs (event-loop thread only)."""

    __slots__ = ("fsync", "request_latency", "snapshot", "snapshot_bytes")

    def __init__(self) -> None:
        # api -> latency (seconds) from receiving a request to sending its response.
        self.request_latency: dict[int, Histogram] = {}
        self.fsync = Histogram(LATENCY_BUCKETS)
        self.snapshot = Histogram(SLOW_BUCKETS)
        self.snapshot_bytes = 0

    def request_done(self, api: int, seconds: float) -> None:
        """A response left for a request of ``api`` received ``seconds`` ago."""
        histogram = self.request_latency.get(api)
        if histogram is None:
            if api not in _API_NAMES:
                api = UNKNOWN_API  # never a label per value a client made up
            histogram = self.request_latency.setdefault(api, Histogram(LATENCY_BUCKETS))
        histogram.observe(seconds)

    def latency_ms(self) -> tuple[float, float, float]:
        """(min, avg, max) request latency in milliseconds over every api (stat's line)."""
        _, lo, avg, hi = merged(self.request_latency.values())
        return lo * 1000.0, avg * 1000.0, hi * 1000.0


def facts(server: CoordinatorServer) -> dict[str, int | float]:
    """The server's counts right now (ZooKeeper's names, as in the metrics)."""
    machine = server.machine
    return {
        "znode_count": len(machine.tree),
        "ephemerals_count": machine.tree.ephemeral_count,
        "watch_count": len(server.watches),
        "num_alive_connections": len(server.connections),
        "global_sessions": len(machine.sessions),
        "outstanding_requests": server.outstanding,
        "last_zxid": machine.last_zxid,
        "durable_zxid": server.durable_zxid,
        "uptime_seconds": time.monotonic() - server.started,
    }


_GAUGES: dict[str, str] = {
    "znode_count": "Znodes in the tree, the root included (ZooKeeper: znode_count).",
    "ephemerals_count": "Ephemeral znodes (ZooKeeper: ephemerals_count).",
    "watch_count": "Watches registered, over all connections (ZooKeeper: watch_count).",
    "num_alive_connections": "Open client connections (ZooKeeper: num_alive_connections).",
    "global_sessions": "Live sessions, connected or not (ZooKeeper: global_sessions).",
    "outstanding_requests": "Requests received but not yet answered, mostly waiting for "
    "their fsync (ZooKeeper: outstanding_requests).",
    "last_zxid": "Zxid of the last transaction applied.",
    "durable_zxid": "Zxid up to which the transaction log is fsynced.",
    "uptime_seconds": "Seconds since the server started.",
}


class CoordinatorCollector(Collector):
    """Reads the server at scrape time (on its event loop; see client.observability)."""

    def __init__(self, server: CoordinatorServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        metrics = server.metrics
        info = InfoMetricFamily(PREFIX.rstrip("_"), "The coordinator's version.")
        info.add_metric([], {"version": SERVER_VERSION})
        yield info
        for name, value in facts(server).items():
            yield GaugeMetricFamily(PREFIX + name, _GAUGES[name], value=value)
        by_api = sorted(metrics.request_latency.items())
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests answered, by api.", labels=["api"]
        )
        for api, histogram in by_api:
            requests.add_metric([_API_NAMES[api]], histogram.count)
        yield requests
        yield histogram_family(
            PREFIX + "request_latency_seconds",
            "Time from receiving a request to sending its response (after its fsync, for a "
            "write), by api (ZooKeeper: min/avg/max_latency).",
            (([_API_NAMES[api]], histogram) for api, histogram in by_api),
            ["api"],
        )
        yield histogram_family(
            PREFIX + "fsync_seconds",
            "Time of each group-commit sync of the transaction log (ZooKeeper: fsynctime).",
            [((), metrics.fsync)],
        )
        yield histogram_family(
            PREFIX + "snapshot_seconds",
            "Time to serialize and write each snapshot (ZooKeeper: snapshottime).",
            [((), metrics.snapshot)],
        )
        yield GaugeMetricFamily(
            PREFIX + "last_snapshot_bytes",
            "Size of the last snapshot written.",
            value=metrics.snapshot_bytes,
        )
