"""A real coordinator process with --metrics-port 0 and --log-json."""

from __future__ import annotations

from collections.abc import Callable

from coordinator.client import CoordinatorClient
from tests.observability.scrape import (
    health,
    json_log_lines,
    metrics_address,
    scrape,
    value,
)
from tests.procs import ServerProcess


def test_metrics_move_health_and_json_logs(
    start_coordinator: Callable[..., ServerProcess],
) -> None:
    proc = start_coordinator("--metrics-port", "0", "--log-json")
    address = metrics_address(proc)

    status, report = health(address)
    assert status == 200
    assert report["status"] == "ok" and report["coordinator"]["ok"] is True
    assert report["coordinator"]["port"] == proc.port

    before = scrape(address)
    assert value(before, "rivulet_coordinator_znode_count") == 1  # the root
    assert value(before, "rivulet_coordinator_info", version="rivulet-coordinator 0.1.0") == 1

    with CoordinatorClient(proc.address) as zk:
        for i in range(5):
            zk.create(f"/m{i}", b"x")
        zk.create("/eph", b"", ephemeral=True)
        zk.get_children("/", watch=lambda event: None)
        during = scrape(address)
        stat = zk.server_stat()

    assert value(during, "rivulet_coordinator_znode_count") == 7
    assert value(during, "rivulet_coordinator_ephemerals_count") == 1
    assert value(during, "rivulet_coordinator_watch_count") == 1
    assert value(during, "rivulet_coordinator_global_sessions") == 1
    assert value(during, "rivulet_coordinator_num_alive_connections") >= 1
    assert value(during, "rivulet_coordinator_outstanding_requests") == 0
    creates = value(during, "rivulet_coordinator_requests_total", api="create")
    assert creates == 6
    assert value(during, "rivulet_coordinator_request_latency_seconds_count", api="create") == 6
    assert value(during, "rivulet_coordinator_fsync_seconds_count") >= 1
    assert value(during, "rivulet_coordinator_last_zxid") > value(
        before, "rivulet_coordinator_last_zxid"
    )
    assert value(during, "rivulet_coordinator_durable_zxid") == value(
        during, "rivulet_coordinator_last_zxid"
    )
    # `coordinator stat` reads the same figures.
    assert stat["node_count"] == 7 and stat["ephemeral_count"] == 1
    assert stat["session_count"] >= 1 and stat["connection_count"] >= 1
    assert 0 < stat["latency_min_ms"] <= stat["latency_avg_ms"] <= stat["latency_max_ms"]

    after = scrape(address)  # the session closed: its ephemeral and watch are gone
    assert value(after, "rivulet_coordinator_znode_count") == 6
    assert value(after, "rivulet_coordinator_ephemerals_count") == 0
    assert value(after, "rivulet_coordinator_watch_count") == 0

    proc.stop()
    logs = json_log_lines(proc)
    assert logs, proc.output()
    for entry in logs:
        assert {"ts", "level", "logger", "message"} <= set(entry)
        assert entry["ts"].endswith("Z")
    messages = [entry["message"] for entry in logs]
    assert any(m.startswith("coordinator serving on") for m in messages)
    assert any(m.startswith("received SIGTERM") for m in messages)


def test_metrics_are_off_by_default(coordinator_server: ServerProcess) -> None:
    assert not any("metrics listening" in line for line in coordinator_server.lines)
    assert not any(line.startswith("{") for line in coordinator_server.lines)
