"""``python -m bench latency``: latency at a steady 5,000 records/s.

A broker runs in its own process. In this process a blocking ``Producer``
(``linger_ms=0``) sends 100-byte values at 5,000 records/s to one partition,
each carrying its send time (``perf_counter_ns``, a machine-wide monotonic
clock), and a blocking ``Consumer`` in a third process (long-polling) reads
them back.
Reported for acks=1 and acks=all, as p50/p99 in milliseconds:

- ack latency: ``send`` to the producer's acknowledgement callback;
- end-to-end latency: ``send`` to the record being returned by ``poll``.
"""

from __future__ import annotations

import multiprocessing
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.processes import BROKER_READY, ServerProcess, broker_argv
from bench.report import Result, progress, result
from bench.stats import percentile
from client import Admin, Consumer, Producer, RecordFuture, TopicPartition

RATE = 5_000
VALUE_SIZE = 100
_STAMP = struct.Struct(">q")


def _consume_child(address: str, topic: str, start: int, n: int, conn: Connection) -> None:
    """In a child process: read ``n`` stamped records from ``start``; send back
    the end-to-end latencies (ms)."""
    latencies: list[float] = []
    tp = TopicPartition(topic, 0)
    with Consumer(address, fetch_max_wait_ms=500) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, start)
        conn.send("ready")
        deadline = time.monotonic() + 60 + n / RATE
        while len(latencies) < n and time.monotonic() < deadline:
            for record in consumer.poll(timeout=0.5, max_records=10_000):
                now = time.perf_counter_ns()
                latencies.append((now - _STAMP.unpack_from(record.value)[0]) / 1e6)
    conn.send(latencies)
    conn.close()


def measure_one(
    address: str, topic: str, acks: int | str, seconds: float
) -> tuple[dict[str, float], list[float], list[float]]:
    """Figures, plus the raw ack and end-to-end latencies (ms) for the CDFs."""
    n = int(RATE * seconds)
    ack_ms: list[float] = []
    pad = b"p" * (VALUE_SIZE - _STAMP.size)
    ctx = multiprocessing.get_context("spawn")
    with Producer(address, acks=acks, linger_ms=0) as producer:
        start = producer.send(topic, b"warm-up", partition=0).result(timeout=30).offset + 1
        parent, child = ctx.Pipe()
        reader = ctx.Process(target=_consume_child, args=(address, topic, start, n, child))
        reader.start()
        if not parent.poll(60) or parent.recv() != "ready":
            raise RuntimeError("the consumer process did not start")
        time.sleep(0.5)  # let its first fetch reach the broker (a long poll)
        begin = time.perf_counter()
        for i in range(n):
            delay = begin + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter_ns()

            def on_ack(_f: RecordFuture, sent: int = sent) -> None:
                ack_ms.append((time.perf_counter_ns() - sent) / 1e6)

            producer.send(topic, _STAMP.pack(sent) + pad, partition=0).add_done_callback(on_ack)
        producer.flush()
        e2e_ms: list[float] = parent.recv() if parent.poll(120) else []
        reader.join(30)
    return (
        {
            "ack_p50": percentile(ack_ms, 50),
            "ack_p99": percentile(ack_ms, 99),
            "e2e_p50": percentile(e2e_ms, 50) if e2e_ms else float("nan"),
            "e2e_p99": percentile(e2e_ms, 99) if e2e_ms else float("nan"),
            "received": float(len(e2e_ms)),
            "sent": float(n),
        },
        ack_ms,
        e2e_ms,
    )


def measure(address: str, quick: bool) -> list[Result]:
    seconds = 2.0 if quick else 10.0
    out: list[Result] = []
    with Admin(address) as admin:
        for acks in (1, "all"):
            admin.create_topic(f"latency-{acks}", partitions=1)
    for acks in (1, "all"):
        progress(f"{RATE:,} records/s for {seconds:.0f}s, acks={acks}")
        figures, ack_ms, e2e_ms = measure_one(address, f"latency-{acks}", acks, seconds)
        if figures["received"] < figures["sent"]:
            raise RuntimeError(f"only {figures['received']:.0f} of {figures['sent']:.0f} arrived")
        cdf = {"ack_p50": ack_ms, "e2e_p50": e2e_ms}
        for name in ("ack_p50", "ack_p99", "e2e_p50", "e2e_p99"):
            out.append(result(f"acks_{acks}_{name}", figures[name], "ms", samples=cdf.get(name)))
    return out


def run(quick: bool = False) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-latency-") as tmp:
        server = ServerProcess(
            broker_argv(Path(tmp) / "data", "--log-level", "WARNING"), ready=BROKER_READY
        ).start()
        try:
            return measure(server.address, quick)
        finally:
            server.stop()


if __name__ == "__main__":
    from bench.report import print_table

    print_table("latency", run(quick="--quick" in sys.argv))
