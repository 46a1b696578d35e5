"""Randomised faults: kills, pauses, clean stops and restarts of brokers under load.

Three idempotent acks=all producers write to a replicated topic (RF 3,
min.insync.replicas 2) while brokers are killed (-9), frozen (SIGSTOP, sometimes
past the session timeout), stopped cleanly (controlled shutdown) and restarted;
a consumer reads along the whole time. At most one broker is down at a time, so
writes can always go on. Afterwards every acknowledged record must be in the log
exactly once, in offset order without gaps, each producer's records in send
order — and the live consumer must have seen exactly a prefix of that log.

The schedule is random with a printed seed (``RIVULET_FAULT_SEED`` replays one).
CI runs a short schedule; ``RIVULET_LONG_FAULTS=1`` runs a long one.
"""

from __future__ import annotations

import os
import random
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest
import trio

from client import Admin, Consumer, TopicPartition
from tests.cluster.harness import SESSION_TIMEOUT_MS, Cluster, partition_state, wait_for
from tests.cluster.load import LoadProducer, check_log, read_all

pytestmark = pytest.mark.slow

TOPIC = "chaos"
PARTITIONS = 3
LONG = os.environ.get("RIVULET_LONG_FAULTS") == "1"
STEPS = 60 if LONG else 7


class LiveConsumer(threading.Thread):
    """Reads every partition from the beginning for as long as the test runs."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="live-consumer", daemon=True)
        self.bootstrap = bootstrap
        self.seen: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        try:
            with Consumer(
                self.bootstrap, fetch_max_wait_ms=200, metadata_max_age_ms=2000
            ) as consumer:
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                while not self._stop_event.is_set():
                    for r in consumer.poll(0.3):
                        self.seen[r.partition].append((r.offset, r.value))
        except BaseException as exc:
            self.error = exc
            raise


async def test_random_faults_keep_every_acknowledged_record_once_and_in_order(
    make_cluster: Callable[..., Cluster],
) -> None:
    seed = int(os.environ.get("RIVULET_FAULT_SEED", str(random.randrange(1 << 30))))
    print(f"fault schedule seed {seed} ({STEPS} steps)")
    rng = random.Random(seed)
    cluster = make_cluster(3, "--leader-imbalance-check-interval-ms", "2000")

    def create() -> None:
        with Admin(cluster.bootstrap) as admin:
            admin.create_topic(TOPIC, PARTITIONS, 3, {"min.insync.replicas": "2"})

    await trio.to_thread.run_sync(create)
    producers = [
        LoadProducer(cluster.bootstrap, TOPIC, f"w{i}", PARTITIONS, rate=400) for i in range(3)
    ]
    for p in producers:
        p.start()
    consumer = LiveConsumer(cluster.bootstrap)
    consumer.start()
    await trio.sleep(1.0)
    down: int | None = None  # the broker currently killed, stopped or frozen
    frozen = False
    history: list[str] = []
    for _ in range(STEPS):
        if down is None:
            down = rng.randrange(3)
            action = rng.choice(["kill", "kill", "pause", "stop"])
            history.append(f"{action} {down}")
            if action == "kill":
                cluster.kill(down)
            elif action == "stop":
                await trio.to_thread.run_sync(cluster.stop_broker, down)
            else:
                cluster.pause(down)
                frozen = True
        elif frozen:
            history.append(f"resume {down}")
            cluster.resume(down)
            down, frozen = None, False
        else:
            history.append(f"restart {down}")
            await trio.to_thread.run_sync(cluster.start_broker, down)
            down = None
        # Frozen brokers stay paused either shorter or longer than the session timeout.
        await trio.sleep(rng.uniform(0.5, 2 * SESSION_TIMEOUT_MS / 1000 + 0.5))
    if down is not None:
        if frozen:
            cluster.resume(down)
        else:
            await trio.to_thread.run_sync(cluster.start_broker, down)
    print("faults:", ", ".join(history))

    async def healed() -> bool:
        states = [await partition_state(cluster.address(0), TOPIC, p) for p in range(PARTITIONS)]
        return all(len(s["isr"]) == 3 for s in states)

    await wait_for(healed, 30, "every broker back in every ISR")
    await trio.sleep(0.5)
    for p in producers:
        p.stop()
    for p in producers:
        await trio.to_thread.run_sync(p.join, 120)
        assert p.error is None, p.error
        assert not p.failed, (seed, p.failed[:3])
    acked = sum(len(p.acked) for p in producers)
    log = await trio.to_thread.run_sync(read_all, cluster.address(1), TOPIC, PARTITIONS, acked)
    await trio.sleep(1.0)
    consumer.stop()
    await trio.to_thread.run_sync(consumer.join, 30)
    assert consumer.error is None, consumer.error
    result = check_log(log, producers)
    assert not result.problems, (seed, history, result.problems[:5])
    assert result.records >= acked
    for partition, entries in log.items():
        live = consumer.seen.get(partition, [])
        assert live == entries[: len(live)], (seed, f"live consumer diverged on {partition}")
        assert len(live) > 0
