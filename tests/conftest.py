"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.procs import ServerProcess, coordinator_argv


@pytest.fixture
def start_coordinator(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a coordinator process (data under tmp_path unless given); all stopped at the end."""
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
