"""Operating a cluster: controlled shutdown, preferred-leader election, reassignment, CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from client import Admin
from client.protocol import ApiKey
from tests.broker.rpc import batch, produce_request
from tests.cluster.harness import Cluster, call, led_state, partition_state, wait_for
from tests.cluster.load import LoadProducer, check_log, read_all

pytestmark = pytest.mark.slow


async def leaders(cluster: Cluster, via: int, topic: str, partitions: int) -> list[int]:
    return [
        (await partition_state(cluster.address(via), topic, p))["leader"] for p in range(partitions)
    ]


async def preferred_leaders(cluster: Cluster, via: int, topic: str, partitions: int) -> list[int]:
    """The first replica of each partition (once ``via`` knows the topic)."""

    async def replicas() -> list[int] | None:
        states = [await partition_state(cluster.address(via), topic, p) for p in range(partitions)]
        return [s["replicas"][0] for s in states]

    result: list[int] = await wait_for(replicas, 10, f"{topic} in the metadata")
    return result


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *argv], capture_output=True, text=True, timeout=60
    )


async def test_rolling_restart_with_controlled_shutdown_shows_clients_no_error(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, "--leader-imbalance-check-interval-ms", "1000")

    def create() -> None:
        with Admin(cluster.bootstrap) as admin:
            admin.create_topic("roll", 3, 3, {"min.insync.replicas": "2"})

    await trio.to_thread.run_sync(create)
    preferred = await preferred_leaders(cluster, 0, "roll", 3)
    assert sorted(preferred) == [0, 1, 2], "placement spreads the preferred leaders"

    async def led_by_preferred() -> bool:
        return await leaders(cluster, 0, "roll", 3) == preferred

    await wait_for(led_by_preferred, 10, "the new partitions led by their preferred replicas")
    producer = LoadProducer(cluster.bootstrap, "roll", "r", partitions=3, rate=800)
    producer.start()
    await trio.sleep(1.0)
    for broker in range(3):
        other = (broker + 1) % 3
        assert await trio.to_thread.run_sync(cluster.stop_broker, broker) == 0
        assert "controlled shutdown: leaderships moved in" in cluster.output(broker)
        now = await leaders(cluster, other, "roll", 3)
        assert broker not in now and -1 not in now
        await trio.to_thread.run_sync(cluster.start_broker, broker)

        async def rebalanced(via: int = other) -> bool:
            current = await leaders(cluster, via, "roll", 3)
            return current == preferred

        # Back in sync, the broker gets its preferred leaderships back automatically.
        await wait_for(rebalanced, 20, f"broker {broker} leading again")
    producer.stop()
    await trio.to_thread.run_sync(producer.join, 60)
    assert producer.error is None
    assert not producer.failed, producer.failed[:3]
    log = await trio.to_thread.run_sync(
        read_all, cluster.address(0), "roll", 3, len(producer.acked)
    )
    result = check_log(log, [producer])
    assert not result.problems, result.problems[:5]


async def test_under_replicated_partitions_and_preferred_election_from_the_cli(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, "--no-auto-leader-rebalance-enable")
    boot = cluster.address(1)
    created = await trio.to_thread.run_sync(
        cli, "topics", "create", "cli", "--partitions", "3", "--replication-factor", "3",
        "--bootstrap", boot,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    preferred = await preferred_leaders(cluster, 1, "cli", 3)

    async def led_by_preferred() -> bool:
        return await leaders(cluster, 1, "cli", 3) == preferred

    await wait_for(led_by_preferred, 10, "the new partitions led by their preferred replicas")
    healthy = await trio.to_thread.run_sync(
        cli, "topics", "describe", "--under-replicated", "--bootstrap", boot
    )
    assert healthy.returncode == 0 and healthy.stdout == ""
    await trio.to_thread.run_sync(cluster.stop_broker, 0)

    async def shrunk() -> bool:
        s = await partition_state(boot, "cli", 0)
        return 0 not in s["isr"]

    await wait_for(shrunk, 15, "broker 0 out of the ISRs")
    degraded = await trio.to_thread.run_sync(
        cli, "topics", "describe", "cli", "--under-replicated", "--bootstrap", boot
    )
    assert degraded.returncode == 0
    lines = degraded.stdout.strip().splitlines()
    assert len(lines) == 3 and all("Isr: " in line and "LeaderEpoch: " in line for line in lines)
    await trio.to_thread.run_sync(cluster.start_broker, 0)

    async def in_sync() -> bool:
        states = [await partition_state(boot, "cli", p) for p in range(3)]
        return all(sorted(s["isr"]) == [0, 1, 2] for s in states)

    await wait_for(in_sync, 20, "broker 0 back in every ISR")
    moved = await leaders(cluster, 1, "cli", 3)
    assert moved != preferred and 0 not in moved, "no automatic rebalance when disabled"
    elected = await trio.to_thread.run_sync(
        cli, "leaders", "elect", "--topic", "cli", "--bootstrap", boot
    )
    assert elected.returncode == 0, elected.stderr
    assert "Elected the preferred leader of cli-" in elected.stdout
    assert await leaders(cluster, 1, "cli", 3) == preferred
    again = await trio.to_thread.run_sync(cli, "leaders", "elect", "--bootstrap", boot)
    assert again.returncode == 0 and "led by their preferred replica already" in again.stdout


async def test_reassignment_moves_a_partition_and_its_data(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3)
    boot = cluster.address(0)

    def create() -> None:
        with Admin(boot) as admin:
            admin.create_topic("move", 1, 1)

    await trio.to_thread.run_sync(create)
    source = (await led_state(boot, "move", 0))["leader"]
    for i in range(20):

        async def written(i: int = i) -> bool:
            r = await call(
                cluster.address(source),
                ApiKey.PRODUCE,
                produce_request("move", 0, batch(b"m%d" % i), -1),
            )
            # The leader may not have applied the new state yet: retriable, try again.
            return bool(r["topics"][0]["partitions"][0]["error_code"] == 0)

        await wait_for(written, 10, f"record {i} written")
    target = [b for b in range(3) if b != source]
    moved = await trio.to_thread.run_sync(
        cli, "topics", "reassign", "move", "--partition", "0",
        "--replicas", ",".join(map(str, target)), "--bootstrap", boot,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr + moved.stdout
    state = await partition_state(boot, "move", 0)
    assert state["replicas"] == target and state["leader"] == target[0]
    assert sorted(state["isr"]) == sorted(target)

    async def gone() -> bool:
        return not (Path(cluster.root) / f"broker{source}" / "move-0").exists()

    await wait_for(gone, 10, "the old replica's log deleted")

    def consume() -> dict[int, list[tuple[int, bytes]]]:
        return read_all(boot, "move", 1, 20, timeout=20)

    log = await trio.to_thread.run_sync(consume)
    assert [v for _, v in log[0]] == [b"m%d" % i for i in range(20)]
    bad = await trio.to_thread.run_sync(
        cli, "topics", "reassign", "move", "--partition", "0", "--replicas", "0,0",
        "--bootstrap", boot,
    )  # fmt: skip
    assert bad.returncode == 1 and "INVALID_REPLICA_ASSIGNMENT" in bad.stderr


async def test_dev_cluster_starts_and_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "broker", "dev-cluster", "--brokers", "2",
            "--data-dir", str(tmp_path / "dev"), "--base-port", "0", "--coordinator-port", "0",
            "--session-timeout-ms", "2000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        with trio.fail_after(90):
            while not lines or not lines[-1].startswith("bootstrap:"):
                line = await trio.to_thread.run_sync(proc.stdout.readline)
                assert line, "dev-cluster exited early"
                lines.append(line.strip())
        bootstrap = lines[-1].split(" ", 1)[1]
        assert any(line.startswith("coordinator listening on") for line in lines)
        assert sum(line.startswith("broker ") for line in lines) == 2

        def use() -> list[int]:
            with Admin(bootstrap) as admin:
                admin.create_topic("dev", 2, 2)
                return [len(p.isr) for p in admin.describe_topic("dev").partitions]

        assert await trio.to_thread.run_sync(use) == [2, 2]
        proc.send_signal(signal.SIGINT)
        code = await trio.to_thread.run_sync(lambda: proc.wait(60))
        assert code == 0
        assert (tmp_path / "dev" / "logs" / "broker-1.log").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
