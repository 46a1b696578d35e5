"""``python -m bench coordinator``: znode throughput and watch latency.

The server runs in its own process with fsync on (creates and sets are
group-committed). Throughput is measured with one request in flight and with
1000 in flight (1000 concurrent tasks on one session); watch latency is the
time from a set on one client to the data_changed event on another. Apache
ZooKeeper is measured on the same workloads by ``bench.peers`` when it is
installed, so the ratios come from one run on one machine.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bench.processes import ServerProcess, coordinator_argv
from bench.report import Result, progress, result
from bench.stats import median, percentile
from coordinator.client import AsyncCoordinatorClient, WatchedEvent, open_coordinator


async def _throughput(
    op: Callable[[int], Awaitable[object]], concurrency: int, seconds: float
) -> float:
    """Completed ops per second with ``concurrency`` tasks looping until the deadline."""
    done = 0
    counter = iter(range(1 << 62))
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            await op(next(counter))
            done += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return done / (time.perf_counter() - start)


async def _watch_latency(
    a: AsyncCoordinatorClient, b: AsyncCoordinatorClient, n: int
) -> list[float]:
    await a.create("/bench/watched", b"0", make_parents=True)
    samples: list[float] = []
    for i in range(n):
        fired = trio.Event()
        arrival = [0.0]

        def on_event(
            event: WatchedEvent, fired: trio.Event = fired, arrival: list[float] = arrival
        ) -> None:
            arrival[0] = time.perf_counter()
            fired.set()

        await b.exists("/bench/watched", watch=on_event)
        sent = time.perf_counter()
        await a.set("/bench/watched", str(i).encode())
        await fired.wait()
        samples.append((arrival[0] - sent) * 1000.0)
    return samples


async def _measure(address: str, quick: bool) -> list[Result]:
    seconds = 0.5 if quick else 3.0
    runs = 1 if quick else 3
    out: list[Result] = []
    async with (
        open_coordinator(address, session_timeout=30.0) as zk,
        open_coordinator(address, session_timeout=30.0) as watcher,
    ):
        await zk.create("/bench/node", b"x" * 100, make_parents=True)
        await zk.ensure_path("/bench/c")
        payload = b"y" * 100
        round_no = iter(range(1 << 62))

        def create_op(i: int) -> Awaitable[object]:
            return zk.create(f"/bench/c/r{current_round}-{i}", payload)

        def get_op(i: int) -> Awaitable[object]:
            return zk.get("/bench/node")

        def set_op(i: int) -> Awaitable[object]:
            return zk.set("/bench/node", payload)

        current_round = 0
        for concurrency in (1, 1000):
            for name, op in (("create", create_op), ("get", get_op), ("set", set_op)):
                figures = []
                for _ in range(runs):
                    current_round = next(round_no)
                    progress(f"{name} with {concurrency} in flight")
                    figures.append(await _throughput(op, concurrency, seconds))
                value = median(figures)
                out.append(result(f"{name}_{concurrency}_ops_per_s", value, "ops/s"))
        progress("watch latency")
        samples = await _watch_latency(zk, watcher, 300 if quick else 3000)
        out.append(result("watch_latency_p50", percentile(samples, 50), "ms", samples=samples))
        out.append(result("watch_latency_p99", percentile(samples, 99), "ms"))
    return out


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-coord-") as tmp:
        server = ServerProcess(coordinator_argv(Path(tmp) / "data")).start()
        try:
            return trio.run(_measure, server.address, quick)
        finally:
            server.stop()


if __name__ == "__main__":
    from bench.report import print_table

    print_table("coordinator", run())
