"""``python -m bench zookeeper``: Apache ZooKeeper on the coordinator benchmark's workloads.

Runs only where ZooKeeper (``zkServer.sh`` on PATH, in ``$ZOOKEEPER_HOME/bin``
or a distribution's usual place), ``java`` and the ``kazoo`` Python package are
installed; otherwise it reports itself unavailable and the suite skips it. A
standalone server runs in its own process with its defaults (the transaction
log is fsynced before a write is acknowledged, as the coordinator does), and
the workloads are the coordinator benchmark's, driven by kazoo from one Python
process: create / get / set of 100-byte znodes with one request in flight and
with 1,000 in flight (kazoo's ``*_async`` calls, a window of 1,000), and the
time from a set on one session to the data-changed event on another.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers import (
    PeerRule,
    Unavailable,
    find_executable,
    free_port,
    require_module,
    start_process,
    stop_process,
    wait_for_port,
)
from bench.report import Result, progress, result
from bench.stats import median, percentile

OPS = ("create", "get", "set")
CONCURRENCY = (1, 1000)

PEERS: list[PeerRule] = [
    *(
        PeerRule(
            f"coordinator.{op}_{c}_ops_per_s",
            f"zookeeper.{op}_{c}_ops_per_s",
            f"{op} 100 B znodes, {c} in flight",
        )
        for c in CONCURRENCY
        for op in OPS
    ),
    PeerRule(
        "coordinator.watch_latency_p50",
        "zookeeper.watch_latency_p50",
        "set to watch event p50",
        higher_is_better=False,
    ),
    PeerRule(
        "coordinator.watch_latency_p99",
        "zookeeper.watch_latency_p99",
        "set to watch event p99",
        higher_is_better=False,
    ),
]

_SEARCH = ("/usr/share/zookeeper/bin", "/opt/zookeeper/bin", "/usr/local/zookeeper/bin")


def zk_server() -> str:
    """The zkServer.sh script, or Unavailable."""
    home = os.environ.get("ZOOKEEPER_HOME")
    dirs = [f"{home}/bin"] if home else []
    found = find_executable(["zkServer.sh"], [*dirs, *_SEARCH])
    if not found:
        raise Unavailable("zkServer.sh not found on PATH, in $ZOOKEEPER_HOME/bin or /usr/share")
    if not find_executable(["java"]):
        raise Unavailable("java not found on PATH (ZooKeeper needs it)")
    require_module("kazoo", "pip install kazoo, or rivulet[bench]")
    return found


def check() -> None:
    """Raise Unavailable unless ZooKeeper can be measured here."""
    zk_server()


def _client(address: str) -> Any:
    # kazoo logs its first refused connection attempts (the server is still starting).
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    kazoo = importlib.import_module("kazoo.client")
    zk = kazoo.KazooClient(hosts=address, timeout=30.0)
    zk.start(timeout=60)
    return zk


def _sync(op: Callable[[int], object], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        op(done)
        done += 1
    return done / (time.perf_counter() - start)


def _windowed(op: Callable[[int], Any], window: int, seconds: float) -> float:
    """Ops per second with up to ``window`` async requests in flight."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()
    completed = [0]
    failures: list[BaseException] = []

    def on_done(async_result: Any) -> None:
        if async_result.exception is not None:
            failures.append(async_result.exception)
        with lock:
            completed[0] += 1
        slots.release()

    issued = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and not failures:
        slots.acquire()
        op(issued).rawlink(on_done)
        issued += 1
    for _ in range(window):  # drain
        slots.acquire()
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"ZooKeeper request failed: {failures[0]!r}")
    return completed[0] / elapsed


def _watch_latency(a: Any, b: Any, n: int) -> list[float]:
    a.ensure_path("/bench")
    a.create("/bench/watched", b"0")
    samples: list[float] = []
    for i in range(n):
        fired = threading.Event()
        arrival = [0.0]

        def on_event(
            _event: Any, fired: threading.Event = fired, arrival: list[float] = arrival
        ) -> None:
            arrival[0] = time.perf_counter()
            fired.set()

        b.exists("/bench/watched", watch=on_event)
        sent = time.perf_counter()
        a.set("/bench/watched", str(i).encode())
        if not fired.wait(30):
            raise RuntimeError("a ZooKeeper watch did not fire within 30 s")
        samples.append((arrival[0] - sent) * 1000.0)
    return samples


def measure(address: str, quick: bool) -> list[Result]:
    seconds = 0.5 if quick else 3.0
    runs = 1 if quick else 3
    zk = _client(address)
    watcher = _client(address)
    out: list[Result] = []
    try:
        payload = b"y" * 100
        zk.ensure_path("/bench/c")
        zk.create("/bench/node", b"x" * 100)
        current = [0]

        ops_sync: dict[str, Callable[[int], object]] = {
            "create": lambda i: zk.create(f"/bench/c/r{current[0]}-{i}", payload),
            "get": lambda i: zk.get("/bench/node"),
            "set": lambda i: zk.set("/bench/node", payload),
        }
        ops_async: dict[str, Callable[[int], Any]] = {
            "create": lambda i: zk.create_async(f"/bench/c/r{current[0]}-{i}", payload),
            "get": lambda i: zk.get_async("/bench/node"),
            "set": lambda i: zk.set_async("/bench/node", payload),
        }
        for concurrency in CONCURRENCY:
            for name in OPS:
                figures = []
                for _ in range(runs):
                    current[0] += 1
                    progress(f"ZooKeeper {name} with {concurrency} in flight")
                    if concurrency == 1:
                        figures.append(_sync(ops_sync[name], seconds))
                    else:
                        figures.append(_windowed(ops_async[name], concurrency, seconds))
                key = f"{name}_{concurrency}"
                out.append(result(f"{key}_ops_per_s", median(figures), "ops/s"))
        progress("ZooKeeper watch latency")
        samples = _watch_latency(zk, watcher, 300 if quick else 3000)
        out.append(result("watch_latency_p50", percentile(samples, 50), "ms", samples=samples))
        out.append(result("watch_latency_p99", percentile(samples, 99), "ms"))
    finally:
        for client in (zk, watcher):
            client.stop()
            client.close()
    return out


def run(quick: bool = False) -> list[Result]:
    script = zk_server()
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-zookeeper-") as tmp:
        port = free_port()
        config = Path(tmp) / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    f"dataDir={tmp}/data",
                    f"clientPort={port}",
                    "clientPortAddress=127.0.0.1",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "",
                ]
            )
        )
        log = Path(tmp) / "zookeeper.log"
        env = {
            "ZOO_LOG_DIR": tmp,
            "ZOO_LOG4J_PROP": "WARN,CONSOLE",
            "JVMFLAGS": os.environ.get("JVMFLAGS", "-Xmx512m"),
        }
        proc = start_process([script, "start-foreground", str(config)], log, env)
        try:
            wait_for_port(port, proc, 60.0, log)
            return measure(f"127.0.0.1:{port}", quick)
        finally:
            stop_process(proc)


if __name__ == "__main__":
    from bench.report import print_table

    print_table("zookeeper", run(quick="--quick" in sys.argv))
