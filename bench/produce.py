"""``python -m bench produce``: producer throughput from one Python process.

A broker runs in its own process (embedded coordinator, fsync on acks=all as
configured by default). One blocking ``Producer`` in this process sends
100-byte values as fast as ``send`` accepts them, then flushes; the figure is
records (and value MB) per second from the first ``send`` to the end of the
flush, i.e. every record acknowledged. Four cases: acks 1 and all, with and
without keys (keys ``key-0`` .. ``key-9999``: murmur2 over 6 partitions).
``cpu_per_record`` is this process's CPU time (caller + I/O thread) per
record: the figure that does not depend on what else the machine is doing.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

from bench.processes import BROKER_READY, ServerProcess, broker_argv
from bench.report import Result, progress, result
from bench.stats import median
from client import Admin, Producer

VALUE_SIZE = 100
PARTITIONS = 6
KEYS = 10_000

PRODUCER_SETTINGS: dict[str, object] = {
    "linger_ms": 5,
    "batch_size": 512 * 1024,
    "buffer_memory": 64 * 1024 * 1024,
}


def produce_once(
    address: str, topic: str, n: int, acks: int | str, keyed: bool
) -> tuple[float, float]:
    """Send ``n`` records and flush; records per second, and this process's CPU
    nanoseconds per record (all threads: the caller's and the I/O thread)."""
    value = b"v" * VALUE_SIZE
    keys = [b"key-%d" % i for i in range(KEYS)]
    with Producer(address, acks=acks, **PRODUCER_SETTINGS) as producer:  # type: ignore[arg-type]
        producer.send(topic, value).result(timeout=30)  # metadata + producer id
        send = producer.send
        gc.collect()
        cpu = time.process_time()
        start = time.perf_counter()
        if keyed:
            for i in range(n):
                send(topic, value, keys[i % KEYS])
        else:
            for _ in range(n):
                send(topic, value)
        producer.flush()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return n / elapsed, cpu / n * 1e9


def measure(address: str, quick: bool) -> list[Result]:
    n = 300_000 if quick else 2_000_000
    runs = 1 if quick else 3
    out: list[Result] = []
    with Admin(address) as admin:
        for acks in (1, "all"):
            for keyed in (False, True):
                admin.create_topic(f"bench-{acks}-{keyed}", partitions=PARTITIONS)
    for acks in (1, "all"):
        for keyed in (False, True):
            label = f"acks_{acks}_{'keyed' if keyed else 'no_key'}"
            figures = []
            cpus = []
            for run in range(runs):
                progress(f"produce {n:,} x {VALUE_SIZE} B, {label} (run {run + 1}/{runs})")
                rate, cpu = produce_once(address, f"bench-{acks}-{keyed}", n, acks, keyed)
                figures.append(rate)
                cpus.append(cpu)
            rate = median(figures)
            out.append(result(f"{label}_records_per_s", rate, "records/s"))
            out.append(result(f"{label}_mb_per_s", rate * VALUE_SIZE / 1e6, "MB/s"))
            out.append(result(f"{label}_cpu_per_record", median(cpus), "ns"))
    return out


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-produce-") as tmp:
        server = ServerProcess(
            broker_argv(Path(tmp) / "data", "--log-level", "WARNING"), ready=BROKER_READY
        ).start()
        try:
            return measure(server.address, quick)
        finally:
            server.stop()


if __name__ == "__main__":
    from bench.report import print_table

    print_table("produce", run(quick="--quick" in sys.argv))
