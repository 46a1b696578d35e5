"""Side-by-side runs against the systems Rivulet imitates (Redis Streams, Apache ZooKeeper).

A peer benchmark (``bench/compare_redis.py``, ``bench/compare_zookeeper.py``)
is an ordinary benchmark module whose ``run`` raises :class:`Unavailable` when
the peer is not installed; the suite then says so and goes on. Nothing is ever
installed by the suite. Each module lists in ``PEERS`` which of its figures
stands next to which Rivulet figure; :func:`pair` turns the results of one run
into that table.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import Result


class Unavailable(RuntimeError):
    """The peer (its server binary or its Python client) is not installed here."""


@dataclass(frozen=True, slots=True)
class PeerRule:
    """Rivulet's figure ``rivulet`` is compared with the peer's figure ``peer``."""

    rivulet: str
    peer: str
    workload: str
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class PeerComparison:
    workload: str
    rivulet: str
    rivulet_value: float
    peer: str
    peer_value: float
    unit: str
    higher_is_better: bool

    @property
    def advantage(self) -> float:
        """How many times better Rivulet is (above 1) or worse (below 1)."""
        if self.higher_is_better:
            return self.rivulet_value / self.peer_value
        return self.peer_value / self.rivulet_value

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "rivulet": self.rivulet,
            "rivulet_value": self.rivulet_value,
            "peer": self.peer,
            "peer_value": self.peer_value,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "advantage": self.advantage,
        }


def pair(results: Iterable[Result], rules: Iterable[PeerRule]) -> list[PeerComparison]:
    """The rules whose two figures were both measured (and are positive numbers)."""
    by_name = {r["name"]: r for r in results}
    out: list[PeerComparison] = []
    for rule in rules:
        ours, theirs = by_name.get(rule.rivulet), by_name.get(rule.peer)
        if ours is None or theirs is None:
            continue
        a, b = ours["value"], theirs["value"]
        if not (a > 0 and b > 0):  # also false for NaN
            continue
        out.append(
            PeerComparison(
                rule.workload, rule.rivulet, a, rule.peer, b, ours["unit"], rule.higher_is_better
            )
        )
    return out


def require_module(name: str, hint: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise Unavailable(f"the Python package {name!r} is not installed ({hint})")


def find_executable(names: Sequence[str], extra_dirs: Sequence[str] = ()) -> str | None:
    """The first of ``names`` on PATH or in one of ``extra_dirs``."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for directory in extra_dirs:
        for name in names:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Until 127.0.0.1:port accepts a connection; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args!r} did not listen on port {port} in {timeout}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_process(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Any:
    """A server process (in this process group, so that the suite's timeout reaches it
    too), its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only this process (by its pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
