"""``python -m bench cluster``: replication cost and failover time on a three-broker cluster.

One coordinator and three brokers run in their own processes on this machine
(session timeout ``SESSION_TIMEOUT_MS``), with data in a temporary directory.

- **Throughput**, RF 3 beside RF 1 in the same run: one blocking ``Producer``
  (acks=all, idempotent) sends 100-byte values to a 6-partition topic with
  replication factor 1, then to one with replication factor 3 and
  min.insync.replicas 2; records per second from the first send to the end of
  the flush. The ratio is compared with Kafka's 2014 figures (821,557 records/s
  with one replica, 421,823 with three and acks=all: 0.51).
- **Failover**: a producer sends one record at a time (each waits for its
  acks=all answer) to a 1-partition RF 3 topic, and the partition leader is
  killed with SIGKILL or stopped with SIGTERM (which moves leadership away
  first: controlled shutdown). The figure is the longest time without an
  acknowledgement from the signal until the old process is gone — from the last
  acknowledgement by the old leader to the first by the new one; after a kill
  that is the time from the kill to the new leader's first acknowledgement.
  Targets: the session timeout + 500 ms after a kill, 200 ms for a controlled
  shutdown. The stopped broker is restarted and back in the ISR before the next
  run.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.processes import BROKER_READY, ServerProcess, broker_argv, coordinator_argv
from bench.report import Result, progress, result
from bench.stats import median
from client import Admin, Producer

SESSION_TIMEOUT_MS = 3000
BROKERS = 3
VALUE_SIZE = 100
PARTITIONS = 6
KAFKA_RF1 = 821_557.0
KAFKA_RF3 = 421_823.0

THROUGHPUT_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 512 * 1024,
    "buffer_memory": 64 * 1024 * 1024,
}
FAILOVER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 0,
    "retry_backoff_ms": 10,
    "retry_backoff_max_ms": 50,
    "request_timeout_ms": 10_000,
    "metadata_max_age_ms": 60_000,
}


class BenchCluster:
    """A coordinator and three brokers, each broker on a port kept across restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.coordinator = ServerProcess(coordinator_argv(root / "coordinator"))
        self.brokers: dict[int, ServerProcess] = {}
        self.ports: dict[int, int] = {}

    def start(self) -> BenchCluster:
        self.coordinator.start()
        for b in range(BROKERS):
            self.start_broker(b)
        return self

    def start_broker(self, broker: int) -> None:
        argv = broker_argv(
            self.root / f"broker{broker}",
            "--coordinator", self.coordinator.address,
            "--id", str(broker),
            "--session-timeout-ms", str(SESSION_TIMEOUT_MS),
            "--log-level", "WARNING",
            "--no-auto-leader-rebalance-enable",
            port=self.ports.get(broker, 0),
        )  # fmt: skip
        proc = ServerProcess(argv, ready=BROKER_READY).start(timeout=60)
        self.brokers[broker] = proc
        self.ports[broker] = proc.port

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for _, p in sorted(self.ports.items()))

    def stop(self) -> None:
        for proc in self.brokers.values():
            proc.stop(timeout=30)
        self.coordinator.stop()


# ---------------------------------------------------------------- throughput


def produce_once(bootstrap: str, topic: str, n: int) -> float:
    """Send ``n`` records and flush; records per second."""
    value = b"v" * VALUE_SIZE
    with Producer(bootstrap, **THROUGHPUT_SETTINGS) as producer:
        producer.send(topic, value).result(timeout=30)  # metadata + producer id
        send = producer.send
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            send(topic, value)
        producer.flush()
        elapsed = time.perf_counter() - start
    return n / elapsed


def throughput(cluster: BenchCluster, quick: bool) -> list[Result]:
    n = 200_000 if quick else 1_000_000
    runs = 1 if quick else 3
    with Admin(cluster.bootstrap) as admin:
        admin.create_topic("bench-rf1", PARTITIONS, 1)
        admin.create_topic("bench-rf3", PARTITIONS, 3, {"min.insync.replicas": "2"})
    rates: dict[int, list[float]] = {1: [], 3: []}
    for run in range(runs):
        for factor in (1, 3):
            progress(f"produce {n:,} x {VALUE_SIZE} B, RF {factor}, acks=all (run {run + 1})")
            rates[factor].append(produce_once(cluster.bootstrap, f"bench-rf{factor}", n))
    rf1, rf3 = median(rates[1]), median(rates[3])
    return [
        result("rf1_acks_all_records_per_s", rf1, "records/s"),
        result("rf3_acks_all_records_per_s", rf3, "records/s"),
        result("rf3_vs_rf1_ratio", rf3 / rf1, "x"),
        result("kafka_2014_rf3_vs_rf1_ratio", KAFKA_RF3 / KAFKA_RF1, "x"),
    ]


# ---------------------------------------------------------------- failover


class Pinger(threading.Thread):
    """Sends one record at a time, remembering when each acknowledgement arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.acks: list[float] = []
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Producer(self.bootstrap, **FAILOVER_SETTINGS) as producer:
                while not self.stopped.is_set():
                    producer.send(self.topic, b"ping").result(timeout=60)
                    self.acks.append(time.monotonic())
                    self.ready.set()
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def wait_ack_after(self, moment: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acks and self.acks[-1] > moment:
                return
            if self.error is not None:
                raise RuntimeError(f"the producer failed: {self.error}")
            time.sleep(0.001)
        raise RuntimeError(f"no acknowledgement within {timeout}s of the failure")

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement between ``start`` and ``end``."""
        before = [t for t in self.acks if t <= start]
        inside = [t for t in self.acks if start < t <= end]
        times = [before[-1] if before else start, *inside]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return max(gaps) if gaps else end - start


def leader_of(bootstrap: str, topic: str) -> tuple[int, list[int]]:
    with Admin(bootstrap) as admin:
        p = admin.describe_topic(topic).partitions[0]
        return p.leader, list(p.isr)


def wait_healed(bootstrap: str, topic: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader, isr = leader_of(bootstrap, topic)
        if leader >= 0 and len(isr) == BROKERS:
            return leader
        time.sleep(0.2)
    raise RuntimeError(f"{topic} did not get its full ISR back within {timeout}s")


def failover(cluster: BenchCluster, quick: bool) -> list[Result]:
    runs = 1 if quick else 3
    topic = "bench-failover"
    with Admin(cluster.bootstrap) as admin:
        admin.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
    pinger = Pinger(cluster.bootstrap, topic)
    pinger.start()
    pinger.ready.wait(60)
    figures: dict[str, list[float]] = {"kill": [], "controlled": []}
    try:
        for run in range(runs):
            for how in ("kill", "controlled"):
                leader = wait_healed(cluster.bootstrap, topic)
                time.sleep(0.5)
                progress(f"failover by {how} of leader {leader} (run {run + 1}/{runs})")
                proc = cluster.brokers[leader]
                moment = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)
                if proc.proc is not None:
                    proc.proc.wait(timeout=60)
                pinger.wait_ack_after(time.monotonic(), 60)
                time.sleep(0.2)
                figures[how].append(pinger.longest_gap(moment, time.monotonic()) * 1000.0)
                cluster.start_broker(leader)
    finally:
        pinger.stopped.set()
        pinger.join(timeout=60)
    kill = median(figures["kill"])
    controlled = median(figures["controlled"])
    return [
        result("failover_kill_ms", kill, "ms"),
        result("failover_kill_target_ms", SESSION_TIMEOUT_MS + 500.0, "ms"),
        result("failover_controlled_shutdown_ms", controlled, "ms"),
        result("failover_controlled_shutdown_target_ms", 200.0, "ms"),
    ]


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-cluster-") as tmp:
        cluster = BenchCluster(Path(tmp)).start()
        try:
            return throughput(cluster, quick) + failover(cluster, quick)
        finally:
            cluster.stop()


if __name__ == "__main__":
    from bench.report import print_table

    print_table("cluster", run(quick="--quick" in sys.argv))
