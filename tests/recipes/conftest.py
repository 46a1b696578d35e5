"""Fixtures of the recipe tests: a real coordinator, clients, a fault proxy, children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.client import CoordinatorClient
from tests.procs import ServerProcess
from tests.recipes.proxy import FaultProxy

SESSION_TIMEOUT = 2.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(coordinator_server: ServerProcess) -> ServerProcess:
    return coordinator_server


@pytest.fixture
def make_client(server: ServerProcess) -> Iterator[Callable[..., CoordinatorClient]]:
    """Factory of started blocking clients (to the server unless ``hosts`` is given)."""
    clients: list[CoordinatorClient] = []

    def make(
        hosts: str | None = None, session_timeout: float = SESSION_TIMEOUT
    ) -> CoordinatorClient:
        client = CoordinatorClient(hosts or server.address, session_timeout=session_timeout)
        client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.address).start()
    yield fault_proxy
    fault_proxy.stop()


class Children:
    """Child processes running ``tests.recipes.child``; all killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        (workdir / "events").touch()

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.workdir / f"stderr-{len(self.procs)}", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.recipes.child", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = self.workdir / f"stderr-{len(self.procs) - 1}"
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL and reap (so the kernel has released its flocks)."""
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)

    def stop_all(self, timeout: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def events(self) -> list[tuple[float, int, str]]:
        out = []
        for line in (self.workdir / "events").read_text().splitlines():
            stamp, pid, event = line.split(" ", 2)
            out.append((float(stamp), int(pid), event))
        return out

    def wait_for(
        self, predicate: Callable[[list[tuple[float, int, str]]], bool], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events()):
                return True
            time.sleep(0.02)
        return predicate(self.events())

    def failures(self) -> list[str]:
        """Children that exited other than by our SIGKILL or a stop, with stderr (a
        child stopped before it installed its SIGTERM handler dies of the signal)."""
        out = []
        for proc in self.procs:
            if proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM, None):
                out.append(
                    f"pid {proc.pid} rc {proc.returncode}:\n"
                    + self.logs[proc.pid].read_text(errors="replace")[-3000:]
                )
        return out


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    workdir = tmp_path / "children"
    workdir.mkdir()
    group = Children(workdir)
    yield group
    for proc in group.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
