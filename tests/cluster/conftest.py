"""Fixtures of the cluster tests: a three-broker cluster of real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory: ``make_cluster(size, *broker_flags)`` starts a cluster, stopped afterwards."""
    started: list[Cluster] = []

    def make(size: int = 3, *extra: str) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(started)}", size, *extra)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()
