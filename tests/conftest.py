"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import BROKER_READY, ServerProcess, broker_argv, coordinator_argv


@pytest.fixture
def start_coordinator(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a coordinator process (data under tmp_path unless given)."""
    started: list[ServerProcess] = []

    def start(*extra: str, data_dir: Path | None = None, port: int = 0) -> ServerProcess:
        proc = ServerProcess(
            coordinator_argv(data_dir or tmp_path / "coordinator", *extra, port=port)
        )
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def coordinator_server(start_coordinator: Callable[..., ServerProcess]) -> ServerProcess:
    """One running coordinator process."""
    return start_coordinator()


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a broker process (embedded coordinator unless ``--coordinator`` is passed)."""
    started: list[ServerProcess] = []

    def start(*extra: str, data_dir: Path | None = None, port: int = 0) -> ServerProcess:
        argv = broker_argv(data_dir or tmp_path / f"broker{len(started)}", *extra, port=port)
        proc = ServerProcess(argv, ready=BROKER_READY)
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def broker_server(start_broker: Callable[..., ServerProcess]) -> ServerProcess:
    """One running single-node cluster (broker with an embedded coordinator)."""
    return start_broker()
