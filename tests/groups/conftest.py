"""Brokers for the consumer-group tests: short sessions, few offsets partitions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import BROKER_READY, ServerProcess, broker_argv

SESSION_MS = 1500
HEARTBEAT_MS = 150
GROUP_FLAGS = (
    "--group-session-timeout-ms",
    str(SESSION_MS),
    "--group-heartbeat-interval-ms",
    str(HEARTBEAT_MS),
    "--offsets-topic-num-partitions",
    "4",
)


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One broker for a test module; tests use their own group and topic names."""
    data_dir = tmp_path_factory.mktemp("group-broker")
    proc = ServerProcess(broker_argv(data_dir, *GROUP_FLAGS), ready=BROKER_READY).start()
    yield proc
    proc.stop()
