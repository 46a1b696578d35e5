"""``python -m bench consume``: consumer throughput from one Python process.

A broker runs in its own process. The benchmark first produces N records of
100 bytes to a topic of 6 partitions, then a blocking ``Consumer`` (in this
process) reads them all from the beginning; the figure is records (and value
MB) per second from the first ``poll`` to the last record. Records are fully
built ``ConsumerRecord`` tuples with CRCs checked.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

from bench.processes import BROKER_READY, ServerProcess, broker_argv
from bench.produce import PRODUCER_SETTINGS, VALUE_SIZE
from bench.report import Result, progress, result
from bench.stats import median
from client import Admin, Consumer, Producer, TopicPartition

PARTITIONS = 6
CONSUMER_SETTINGS: dict[str, object] = {
    "auto_offset_reset": "earliest",
    "max_partition_fetch_bytes": 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
}


def fill(address: str, topic: str, n: int) -> None:
    with Admin(address) as admin:
        admin.create_topic(topic, partitions=PARTITIONS)
    value = b"v" * VALUE_SIZE
    with Producer(address, acks=1, **PRODUCER_SETTINGS) as producer:  # type: ignore[arg-type]
        send = producer.send
        for _ in range(n):
            send(topic, value)
        producer.flush()


def consume_once(address: str, topic: str, n: int) -> tuple[float, float]:
    """Read ``n`` records from the beginning; records per second and this
    process's CPU nanoseconds per record."""
    with Consumer(address, **CONSUMER_SETTINGS) as consumer:  # type: ignore[arg-type]
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        gc.collect()
        got = 0
        cpu = time.process_time()
        start = time.perf_counter()
        while got < n:
            records = consumer.poll(timeout=5.0, max_records=50_000)
            if not records:
                raise RuntimeError(f"consumer stalled after {got} of {n} records")
            got += len(records)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return n / elapsed, cpu / n * 1e9


def measure(address: str, quick: bool) -> list[Result]:
    n = 300_000 if quick else 3_000_000
    runs = 1 if quick else 3
    progress(f"produce {n:,} records of {VALUE_SIZE} B to read back")
    fill(address, "bench-consume", n)
    figures = []
    cpus = []
    for run in range(runs):
        progress(f"consume {n:,} records (run {run + 1}/{runs})")
        rate, cpu = consume_once(address, "bench-consume", n)
        figures.append(rate)
        cpus.append(cpu)
    rate = median(figures)
    return [
        result("records_per_s", rate, "records/s"),
        result("mb_per_s", rate * VALUE_SIZE / 1e6, "MB/s"),
        result("cpu_per_record", median(cpus), "ns"),
    ]


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-consume-") as tmp:
        server = ServerProcess(
            broker_argv(Path(tmp) / "data", "--log-level", "WARNING"), ready=BROKER_READY
        ).start()
        try:
            return measure(server.address, quick)
        finally:
            server.stop()


if __name__ == "__main__":
    from bench.report import print_table

    print_table("consume", run(quick="--quick" in sys.argv))
