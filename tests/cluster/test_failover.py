"""Failover with real processes: a killed leader, a killed follower, a paused leader."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

from client import Admin
from client.protocol import (
    ApiKey,
    FencedLeaderEpochError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
)
from tests.broker.rpc import batch, produce_request
from tests.cluster.harness import (
    SESSION_TIMEOUT_MS,
    Cluster,
    call,
    led_state,
    partition_state,
    wait_for,
)
from tests.cluster.load import LoadProducer, check_log, read_all

pytestmark = pytest.mark.slow

RF3 = {"min.insync.replicas": "2"}


async def create(cluster: Cluster, topic: str, partitions: int, **config: str) -> None:
    def run() -> None:
        with Admin(cluster.bootstrap) as admin:
            admin.create_topic(topic, partitions, 3, {**RF3, **config})

    await trio.to_thread.run_sync(run)


@pytest.mark.parametrize("flush_policy", ["group_commit", "interval"])
async def test_killed_leader_loses_no_acknowledged_record(
    make_cluster: Callable[..., Cluster], flush_policy: str
) -> None:
    cluster = make_cluster(3, "--flush-policy", flush_policy)
    await create(cluster, "kill", 2)
    first = await led_state(cluster.address(0), "kill", 0)
    victim = first["leader"]
    producer = LoadProducer(cluster.bootstrap, "kill", "k", partitions=2, rate=1500)
    producer.start()
    await trio.sleep(1.5)
    cluster.kill(victim)
    killed_at = time.monotonic()
    survivor = next(b for b in range(3) if b != victim)

    async def new_leader() -> tuple[int] | None:
        state = await partition_state(cluster.address(survivor), "kill", 0)
        return (state["leader"],) if state["leader"] not in (-1, victim) else None

    (leader,) = await wait_for(new_leader, 15, "a new leader")
    elected_after = time.monotonic() - killed_at
    assert elected_after < SESSION_TIMEOUT_MS / 1000 + 3
    await trio.sleep(2.0)
    producer.stop()
    await trio.to_thread.run_sync(producer.join, 60)
    assert producer.error is None, producer.error
    assert not producer.failed, producer.failed[:3]
    state = await partition_state(cluster.address(survivor), "kill", 0)
    assert state["leader_epoch"] == first["leader_epoch"] + 1
    assert victim not in state["isr"] and leader in state["isr"]
    log = await trio.to_thread.run_sync(
        read_all, cluster.address(survivor), "kill", 2, len(producer.acked)
    )
    result = check_log(log, [producer])
    assert not result.problems, result.problems[:5]
    assert result.records >= len(producer.acked) > 1000


async def test_killed_follower_leaves_the_isr_and_rejoins_after_restart(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3)
    await create(cluster, "follow", 1)
    await create(cluster, "strict", 1, **{"min.insync.replicas": "3"})
    state = await led_state(cluster.address(0), "follow", 0)
    leader = state["leader"]
    follower = next(r for r in state["replicas"] if r != leader)
    producer = LoadProducer(cluster.bootstrap, "follow", "f", partitions=1, rate=500)
    producer.start()
    await trio.sleep(0.5)
    cluster.kill(follower)

    async def shrunk() -> bool:
        s = await partition_state(cluster.address(leader), "follow", 0)
        return follower not in s["isr"] and len(s["isr"]) == 2

    await wait_for(shrunk, 15, "the ISR without the dead follower")
    acked_while_down = len(producer.acked)
    await trio.sleep(1.0)
    assert len(producer.acked) > acked_while_down, "production stopped with a follower down"
    # A topic asking for 3 in-sync replicas refuses acks=all now, but takes acks=1.

    async def strict_shrunk() -> dict[str, Any] | None:
        s = await partition_state(cluster.address(leader), "strict", 0)
        return s if follower not in s["isr"] and s["leader"] not in (-1, follower) else None

    strict = await wait_for(strict_shrunk, 15, "the strict topic's ISR shrunk")
    strict_leader = cluster.address(strict["leader"])
    for acks, code in ((-1, NotEnoughReplicasError.code), (1, 0)):

        async def answered(acks: int = acks) -> tuple[int] | None:
            answer = await call(
                strict_leader, ApiKey.PRODUCE, produce_request("strict", 0, batch(b"x"), acks)
            )
            got = int(answer["topics"][0]["partitions"][0]["error_code"])
            # A leader that has just been elected may not know it yet: ask again.
            return None if got == NotLeaderOrFollowerError.code else (got,)

        assert await wait_for(answered, 10, f"an answer to acks={acks}") == (code,)
    cluster.start_broker(follower)

    async def rejoined() -> bool:
        s = await partition_state(cluster.address(leader), "follow", 0)
        return sorted(s["isr"]) == [0, 1, 2]

    await wait_for(rejoined, 20, "the restarted follower back in the ISR")
    producer.stop()
    await trio.to_thread.run_sync(producer.join, 60)
    assert producer.error is None and not producer.failed
    # Kill the two others: the restarted follower must hold every acknowledged record.
    others = [b for b in range(3) if b != follower]
    await trio.to_thread.run_sync(cluster.stop_broker, others[0])
    await trio.to_thread.run_sync(cluster.stop_broker, others[1])

    async def leads() -> bool:
        s = await partition_state(cluster.address(follower), "follow", 0)
        return bool(s["leader"] == follower)

    await wait_for(leads, 15, "the restarted follower leading")
    log = await trio.to_thread.run_sync(
        read_all, cluster.address(follower), "follow", 1, len(producer.acked)
    )
    result = check_log(log, [producer])
    assert not result.problems, result.problems[:5]


async def test_paused_leader_is_replaced_acknowledges_nothing_and_truncates(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, "--replica-lag-time-max-ms", "30000")
    await create(cluster, "pause", 1)
    state = await led_state(cluster.address(0), "pause", 0)
    old = state["leader"]
    followers = [r for r in state["replicas"] if r != old]
    address = cluster.address(old)
    producer = LoadProducer(cluster.bootstrap, "pause", "p", partitions=1, rate=300)
    producer.start()
    await trio.sleep(1.0)
    # A divergent tail: the followers stop fetching, the leader takes one more acks=1
    # write (never replicated), then the leader itself freezes.
    for f in followers:
        cluster.pause(f)
    await trio.sleep(0.2)
    # This first write answers the followers' parked fetches (into their socket
    # buffers); the next one has no fetch waiting for it.
    await call(address, ApiKey.PRODUCE, produce_request("pause", 0, batch(b"pre"), 1))
    await trio.sleep(0.1)
    tail = await call(address, ApiKey.PRODUCE, produce_request("pause", 0, batch(b"tail"), 1))
    tail_entry = tail["topics"][0]["partitions"][0]
    assert tail_entry["error_code"] == 0
    tail_offset = tail_entry["base_offset"]
    cluster.pause(old)
    for f in followers:
        cluster.resume(f)

    async def replaced() -> tuple[int] | None:
        s = await partition_state(cluster.address(followers[0]), "pause", 0)
        return (s["leader"],) if s["leader"] in followers else None

    (new,) = await wait_for(replaced, 20, "a new leader while the old one is frozen")
    await trio.sleep(1.0)
    cluster.resume(old)
    # Right after it wakes up, the old leader must not acknowledge anything.
    for acks in (1, -1):
        answer = await call(
            address, ApiKey.PRODUCE, produce_request("pause", 0, batch(b"zombie"), acks)
        )
        entry = answer["topics"][0]["partitions"][0]
        assert entry["error_code"] in (
            NotLeaderOrFollowerError.code,
            FencedLeaderEpochError.code,
        ), entry

    async def follows() -> bool:
        return "truncating from" in cluster.output(old) and "following broker" in cluster.output(
            old
        )

    await wait_for(follows, 20, "the old leader truncating and following")
    producer.stop()
    await trio.to_thread.run_sync(producer.join, 60)
    assert producer.error is None and not producer.failed
    log = await trio.to_thread.run_sync(
        read_all, cluster.address(new), "pause", 1, len(producer.acked)
    )
    result = check_log(log, [producer], frozenset({b"pre"}))
    assert not result.problems, result.problems[:5]
    # The unreplicated acks=1 write is gone everywhere (it is the divergent tail).
    assert all(v != b"tail" for entries in log.values() for _, v in entries)

    # Once back in the ISR the old leader's log equals the new leader's.
    async def back_in_sync() -> bool:
        s = await partition_state(cluster.address(new), "pause", 0)
        return old in s["isr"]

    await wait_for(back_in_sync, 20, "the old leader back in the ISR")
    # It cut its log at the divergence, below the unreplicated write, not at its HW.
    cuts = re.findall(r"pause-0>: truncating from (\d+) to (\d+)", cluster.output(old))
    assert cuts, cluster.output(old)[-3000:]
    start, end = map(int, cuts[0])
    assert end <= tail_offset < start
