"""A broker shared by a test module (one process start instead of one per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import BROKER_READY, ServerProcess, broker_argv


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One single-node cluster for the whole module; tests use their own topic names."""
    data_dir = tmp_path_factory.mktemp("shared-broker")
    proc = ServerProcess(broker_argv(data_dir), ready=BROKER_READY).start()
    yield proc
    proc.stop()
