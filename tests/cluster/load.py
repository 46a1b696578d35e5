"""Load and checking for the cluster tests: idempotent producers and a strict checker.

Each ``LoadProducer`` (a thread with a blocking ``Producer``) sends values
``<name>-<n>`` with n counting up, to partitions round robin, and records which
values were acknowledged. ``check_log`` reads every partition from the
beginning and verifies the guarantees of acks=all with idempotence: every
acknowledged value is there exactly once, nothing that was never sent is there,
offsets run without gaps, and each producer's values are in send order within a
partition.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from client import Consumer, Producer, TopicPartition
from client.accumulator import RecordFuture

PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 2,
    "retry_backoff_ms": 50,
    "retry_backoff_max_ms": 250,
    "request_timeout_ms": 5000,
    "delivery_timeout_ms": 120_000,
    "metadata_max_age_ms": 5000,
}


class LoadProducer(threading.Thread):
    """Sends ``<name>-<n>`` (n = 0, 1, ...) at about ``rate`` records/s until stopped."""

    def __init__(
        self, bootstrap: str, topic: str, name: str, partitions: int, rate: float = 1000.0
    ) -> None:
        super().__init__(name=f"load-{name}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.label = name
        self.partitions = partitions
        self.rate = rate
        self.sent: list[bytes] = []
        self.acked: set[bytes] = set()
        self.failed: list[tuple[bytes, BaseException]] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def _done(self, value: bytes, future: RecordFuture) -> None:
        error = future.exception()
        with self._lock:
            if error is None:
                self.acked.add(value)
            else:
                self.failed.append((value, error))

    def run(self) -> None:
        try:
            with Producer(self.bootstrap, **PRODUCER_SETTINGS) as producer:
                n = 0
                started = time.monotonic()
                while not self._stop_event.is_set():
                    value = f"{self.label}-{n:08d}".encode()
                    future = producer.send(self.topic, value, partition=n % self.partitions)
                    self.sent.append(value)
                    future.add_done_callback(lambda f, v=value: self._done(v, f))
                    n += 1
                    ahead = n / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                producer.flush(timeout=120)
        except BaseException as exc:
            self.error = exc
            raise


@dataclass
class LogCheck:
    records: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_all(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 60.0
) -> dict[int, list[tuple[int, bytes]]]:
    """Every (offset, value) of ``topic`` from the beginning, until ``expected`` records
    were read and nothing new arrives for a while (or ``timeout``)."""
    out: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    with Consumer(bootstrap, fetch_max_wait_ms=200, metadata_max_age_ms=2000) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        total = 0
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(0.5)
            if batch:
                quiet_since = time.monotonic()
            for r in batch:
                out[r.partition].append((r.offset, r.value))
            total += len(batch)
            if total >= expected and time.monotonic() - quiet_since > 1.0:
                break
    return out


def check_log(
    log: dict[int, list[tuple[int, bytes]]],
    producers: list[LoadProducer],
    foreign: frozenset[bytes] = frozenset(),
) -> LogCheck:
    """Check the guarantees (see the module doc); ``foreign`` values, written by the test
    itself, are allowed once each."""
    result = LogCheck()
    sent = set()
    for p in producers:
        sent.update(p.sent)
    seen: dict[bytes, tuple[int, int]] = {}
    for partition, entries in sorted(log.items()):
        result.per_partition[partition] = len(entries)
        result.records += len(entries)
        expected_offset = entries[0][0] if entries else 0
        if expected_offset != 0:
            result.problems.append(f"partition {partition} starts at offset {expected_offset}")
        last_n: dict[str, int] = {}
        for offset, value in entries:
            if offset != expected_offset:
                result.problems.append(
                    f"partition {partition}: gap or disorder, offset {offset} after "
                    f"{expected_offset - 1}"
                )
            expected_offset = offset + 1
            if value in seen:
                result.problems.append(f"{value!r} twice: {seen[value]} and {(partition, offset)}")
            seen[value] = (partition, offset)
            if value in foreign:
                continue
            if value not in sent:
                result.problems.append(f"{value!r} at {partition}/{offset} was never sent")
                continue
            name, _, number = value.decode().rpartition("-")
            n = int(number)
            if n <= last_n.get(name, -1):
                result.problems.append(f"{value!r} out of send order in partition {partition}")
            last_n[name] = n
    for p in producers:
        missing = [v for v in p.acked if v not in seen]
        if missing:
            example = sorted(missing)[:3]
            result.problems.append(
                f"{len(missing)} acknowledged record(s) of {p.label} lost, e.g. {example}"
            )
    return result
