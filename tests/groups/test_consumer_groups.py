"""Consumer groups through the Consumer API, against real broker processes.

Three consumer processes share a six-partition topic and one is killed with
SIGKILL: the others take its partitions within the session timeout, every
record is processed, and only records after the killed member's last commit
are processed twice. In-process consumers check the listener's order (revoked
before assigned elsewhere), a prompt hand-over on close, auto-commit (only what
poll returned), fencing of a cut-off member's commits, static membership,
pattern subscriptions, commit_async, and that committed offsets survive a
broker restart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from client import (
    Admin,
    AsyncConsumer,
    CommitFailedError,
    Consumer,
    IllegalStateError,
    OffsetAndMetadata,
    Producer,
    RebalanceListener,
)
from client.protocol import ApiKey, UnknownMemberIdError
from client.types import TopicPartition as TP
from client.wire import ConnectionLostError
from tests.groups.conftest import GROUP_FLAGS, SESSION_MS
from tests.procs import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
GENEROUS = 20.0


def create(address: str, topic: str, partitions: int) -> None:
    with Admin(address) as admin:
        admin.create_topic(topic, partitions=partitions)


def produce(address: str, topic: str, counts: dict[int, int]) -> None:
    with Producer(address, linger_ms=1) as producer:
        for partition, n in counts.items():
            for i in range(n):
                producer.send(topic, f"{partition}-{i}".encode(), partition=partition)
        producer.flush()


class Log(RebalanceListener):
    """Rebalance callbacks of several consumers, in one list, in order."""

    def __init__(self, events: list[tuple[str, str, frozenset[TP]]], name: str) -> None:
        self.events = events
        self.name = name

    def on_partitions_revoked(self, partitions: set[TP]) -> None:
        self.events.append((self.name, "revoked", frozenset(partitions)))

    def on_partitions_assigned(self, partitions: set[TP]) -> None:
        self.events.append((self.name, "assigned", frozenset(partitions)))

    def on_partitions_lost(self, partitions: set[TP]) -> None:
        self.events.append((self.name, "lost", frozenset(partitions)))


def poll_until(
    consumers: list[Consumer], done: Callable[[], bool], timeout: float = GENEROUS
) -> list[Any]:
    """Poll every consumer in turn (callbacks run in poll) until ``done()``."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        for c in consumers:
            records += c.poll(timeout=0.02)
    return records


def read(
    consumer: Consumer, n: int, timeout: float = GENEROUS, max_records: int | None = None
) -> list[Any]:
    """Poll until ``n`` records came (rebalance callbacks run meanwhile)."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {len(records)} of {n} records")
        wanted = n - len(records) if max_records is None else min(max_records, n - len(records))
        records += consumer.poll(timeout=0.05, max_records=wanted)
    return records


def group_consumer(address: str, group: str, **settings: Any) -> Consumer:
    settings.setdefault("auto_offset_reset", "earliest")
    return Consumer(address, group_id=group, **settings)


# ---------------------------------------------------------------- three processes, one killed


class ChildLog:
    """What a consumer_child process wrote: its processed records, commits and events."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [line.split(" ", 2) for line in complete.splitlines()]

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for kind, *rest in self.lines():
            if kind in "AVL" and len(rest) == 2:
                parts = {int(p) for p in rest[1].split(",") if p}
                owned = owned | parts if kind == "A" else owned - parts
        return owned

    def processed(self) -> list[tuple[int, int]]:
        return [(int(r[1]), int(r[2])) for r in self.lines() if r[0] == "R"]

    def last_commits(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.lines():
            if r[0] == "C":
                out[int(r[1])] = int(r[2])
        return out

    def first_time(self, kind: str, partition: int, after: float) -> float | None:
        """When the first ``kind`` event for ``partition`` at or after ``after`` was."""
        for r in self.lines():
            hit = r[0] == kind and len(r) == 3 and str(partition) in r[2].split(",")
            if hit and float(r[1]) >= after:
                return float(r[1])
        return None


def wait_for(predicate: Callable[[], bool], timeout: float = GENEROUS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[[str, str, str, str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(address: str, group: str, topic: str, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tests.groups.consumer_child"]
        argv += [address, group, topic, str(tmp_path / f"{name}.log")]
        with open(tmp_path / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, stderr=err)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_three_consumer_processes_and_a_kill(
    group_broker: ServerProcess,
    tmp_path: Path,
    children: Callable[[str, str, str, str], subprocess.Popen[bytes]],
) -> None:
    address, group, topic = group_broker.address, "g-procs", "procs"
    create(address, topic, 6)
    produced = {p: 0 for p in range(6)}
    producing = threading.Event()
    producing.set()

    def keep_producing() -> None:
        with Producer(address, linger_ms=1) as producer:
            while producing.is_set():
                for p in range(6):
                    for _ in range(5):
                        producer.send(topic, b"x", partition=p)
                        produced[p] += 1
                producer.flush()
                time.sleep(0.02)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    try:
        procs = [children(address, group, topic, f"c{i}") for i in range(3)]
        logs = [ChildLog(tmp_path / f"c{i}.log") for i in range(3)]
        wait_for(lambda: all(len(log.owned()) == 2 for log in logs))
        assert set().union(*(log.owned() for log in logs)) == set(range(6))
        wait_for(lambda: all(log.processed() for log in logs))
        time.sleep(0.5)

        victim, survivors = logs[0], logs[1:]
        victim_parts = victim.owned()
        killed_at = time.time()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        wait_for(lambda: set().union(*(log.owned() for log in survivors)) == set(range(6)))
        taken = [
            t
            for p in victim_parts
            for log in survivors
            if (t := log.first_time("A", p, killed_at)) is not None
        ]
        assert len(taken) == len(victim_parts)
        took = max(taken) - killed_at
        assert took < SESSION_MS / 1000 + 5.0, f"the survivors took {took:.1f}s"
        time.sleep(0.5)
    finally:
        producing.clear()
        producer.join(30)

    expected = {(p, o) for p, n in produced.items() for o in range(n)}

    def all_processed() -> bool:
        seen = {r for log in logs for r in log.processed()}
        return expected <= seen

    wait_for(all_processed)
    for proc in procs[1:]:
        proc.send_signal(signal.SIGTERM)
    for proc in procs[1:]:
        assert proc.wait(GENEROUS) == 0
    for log in survivors:
        assert log.lines()[-1][0] == "X"  # closed cleanly

    counts: dict[tuple[int, int], int] = {}
    for log in logs:
        for r in log.processed():
            counts[r] = counts.get(r, 0) + 1
    assert set(counts) == expected
    victim_commits = victim.last_commits()
    victim_records = set(victim.processed())
    twice = {r for r, n in counts.items() if n > 1}
    for p, o in twice:
        assert counts[(p, o)] == 2, (p, o)
        assert (p, o) in victim_records, f"{(p, o)} processed twice by survivors"
        assert p in victim_parts and o >= victim_commits.get(p, 0), (p, o, victim_commits)
    for log in survivors:  # a survivor never processed a record twice itself
        assert len(log.processed()) == len(set(log.processed()))


# ---------------------------------------------------------------- in-process consumers


def test_revoked_before_assigned_and_a_prompt_hand_over_on_close(
    group_broker: ServerProcess,
) -> None:
    """Also: a revoked partition's records (prefetched ones too) are never returned after
    its revocation callback, and the auto-commit before revocation hands the new owner
    exactly what poll returned, so every record is returned exactly once."""
    address, group, topic = group_broker.address, "g-order", "order-t"
    create(address, topic, 6)
    produce(address, topic, {p: 10 for p in range(6)})
    events: list[tuple[str, str, frozenset[TP]]] = []
    everything = frozenset(TP(topic, p) for p in range(6))
    first = group_consumer(address, group)
    second = group_consumer(address, group)
    try:
        first.subscribe([topic], listener=Log(events, "first"))
        assert first.subscription() == {topic}
        records = read(first, 60)
        assert len(first.assignment()) == 6
        assert events == [("first", "assigned", everything)]
        produce(address, topic, {p: 40 for p in range(6)})
        records += read(first, 6, max_records=1)  # meanwhile the rest is prefetched

        second.subscribe([topic], listener=Log(events, "second"))
        seconds: list[Any] = []
        deadline = time.monotonic() + GENEROUS
        while len(records) + len(seconds) < 300 or len(second.assignment()) != 3:
            assert time.monotonic() < deadline, "timed out"
            batch = first.poll(timeout=0.01, max_records=3)
            revoked = {tp for name, kind, tps in events if kind == "revoked" for tp in tps}
            late = [r for r in batch if TP(r.topic, r.partition) in revoked]
            assert not late, f"returned after their revocation: {late}"
            records += batch
            seconds += second.poll(timeout=0.01)
        # Incremental: the first member revoked only what moved, before the second got it.
        moved = frozenset(second.assignment())
        assert len(first.assignment()) == 3
        assert events[1:] == [("first", "revoked", moved), ("second", "assigned", moved)]
        assert first.group_metadata().member_epoch >= 1
        returned = sorted((r.partition, r.offset) for r in records + seconds)
        assert returned == [(p, o) for p in range(6) for o in range(50)]

        started = time.monotonic()
        first.close()  # revokes (callback), commits, sends the leave heartbeat
        closed = time.monotonic() - started
        kept = everything - moved
        assert events[3] == ("first", "revoked", kept)
        poll_until([second], lambda: len(second.assignment()) == 6)
        took = time.monotonic() - started
        assert took < SESSION_MS / 1000, f"hand-over took {took:.2f}s (closing {closed:.2f}s)"
        assert events[4] == ("second", "assigned", kept)
        assert second.poll(timeout=0.2) == []  # it starts where the first one stopped
    finally:
        first.close()
        second.close()


def test_auto_commit_commits_only_what_poll_returned(group_broker: ServerProcess) -> None:
    address, group, topic = group_broker.address, "g-auto", "auto-t"
    create(address, topic, 1)
    produce(address, topic, {0: 200})
    tp = TP(topic, 0)
    with group_consumer(
        address, group, enable_auto_commit=True, auto_commit_interval_ms=50, max_poll_records=10
    ) as consumer:
        consumer.subscribe([topic])
        records = poll_until([consumer], lambda: bool(consumer.assignment()))
        deadline = time.monotonic() + GENEROUS
        while len(records) < 10 and time.monotonic() < deadline:
            records += consumer.poll(timeout=0.1, max_records=10 - len(records))
        assert [r.offset for r in records] == list(range(10))
        assert consumer.highwater(tp) == 200  # more was fetched than returned
        consumer.pause(tp)
        deadline = time.monotonic() + GENEROUS
        while consumer.committed([tp])[tp] is None and time.monotonic() < deadline:
            assert consumer.poll(timeout=0.1) == []  # auto-commits, returns nothing
        assert consumer.committed([tp])[tp] == OffsetAndMetadata(10, "", -1)
        time.sleep(0.2)
        assert consumer.poll(timeout=0.1) == []
        assert consumer.committed([tp])[tp] == OffsetAndMetadata(10, "", -1)
        consumer.resume(tp)
        records = read(consumer, 15)
        assert consumer.position(tp) == 25
    # close(): the final commit has everything poll returned, nothing more.
    with Admin(address) as admin:
        offsets = admin.list_group_offsets(group)
    assert offsets[tp].offset == 25 and offsets[tp].log_end_offset == 200
    assert offsets[tp].lag == 175


async def test_a_cut_off_member_cannot_commit_and_loses_its_partitions(
    group_broker: ServerProcess,
) -> None:
    address, group, topic = group_broker.address, "g-fenced", "fenced-t"
    await trio.to_thread.run_sync(create, address, topic, 2)
    events: list[tuple[str, str, frozenset[TP]]] = []
    tps = {TP(topic, 0), TP(topic, 1)}
    async with AsyncConsumer(address, group_id=group, enable_auto_commit=False) as consumer:
        consumer.subscribe([topic], listener=Log(events, "zombie"))
        with trio.fail_after(GENEROUS):
            while consumer.assignment() != tps:
                await consumer.poll(timeout=0.05)
        await consumer.commit({TP(topic, 0): OffsetAndMetadata(3, "before")})
        member_id = consumer.group_metadata().member_id

        # Cut the member off from its coordinator: its heartbeats fail, commits still go.
        member = consumer._member
        assert member is not None
        link_call = member.link.call

        async def no_heartbeats(api: int, payload: dict[str, Any], *, patient: bool = True) -> Any:
            if api == ApiKey.CONSUMER_GROUP_HEARTBEAT:
                raise ConnectionLostError("cut off")
            return await link_call(api, payload, patient=patient)

        member.link.call = no_heartbeats  # type: ignore[method-assign]
        async with AsyncConsumer(address, group_id=group) as other:
            other.subscribe([topic])
            with trio.fail_after(GENEROUS):
                while other.assignment() != tps:  # only once the session expired
                    await other.poll(timeout=0.05)
            with pytest.raises(CommitFailedError) as failed:
                await consumer.commit({TP(topic, 0): 99})
            assert isinstance(failed.value.errors[TP(topic, 0)], UnknownMemberIdError)
            assert (await other.committed([TP(topic, 0)]))[TP(topic, 0)] == OffsetAndMetadata(
                3, "before", -1
            )

            # Back in touch: told it is unknown, it loses its partitions (no commit).
            member.link.call = link_call  # type: ignore[method-assign]
            with trio.fail_after(GENEROUS):
                while ("zombie", "lost", frozenset(tps)) not in events:
                    await consumer.poll(timeout=0.05)
            assert consumer.group_metadata().member_id != member_id
            assert ("zombie", "revoked", frozenset(tps)) not in events
            await other.close()
            with trio.fail_after(GENEROUS):
                while consumer.assignment() != tps:
                    await consumer.poll(timeout=0.05)


def test_static_member_gets_its_partitions_back(group_broker: ServerProcess) -> None:
    address, group, topic = group_broker.address, "g-static-c", "static-c"
    create(address, topic, 4)
    events: list[tuple[str, str, frozenset[TP]]] = []
    a = group_consumer(address, group, group_instance_id="a")
    b = group_consumer(address, group, group_instance_id="b")
    try:
        a.subscribe([topic], listener=Log(events, "a"))
        b.subscribe([topic], listener=Log(events, "b"))
        poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
        mine = a.assignment()
        before = list(events)
        a.close()  # a static leave: the assignment is kept for the instance
        again = group_consumer(address, group, group_instance_id="a")
        try:
            again.subscribe([topic], listener=Log(events, "a again"))
            poll_until([again, b], lambda: again.assignment() == mine)
            assert [e for e in events[len(before) :] if e[0] == "b"] == []
        finally:
            again.unsubscribe()
            again.close()
    finally:
        a.close()
        b.close()


def test_pattern_subscription_commit_async_and_misuse(group_broker: ServerProcess) -> None:
    address, group = group_broker.address, "g-pattern"
    create(address, "pat-a", 1)
    create(address, "pat-b", 2)
    produce(address, "pat-a", {0: 5})
    outcomes: list[tuple[dict[TP, OffsetAndMetadata], BaseException | None, str]] = []
    with group_consumer(address, group, enable_auto_commit=False) as consumer:
        with pytest.raises(TypeError):
            consumer.subscribe("pat-a")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            consumer.subscribe(pattern="(unclosed")
        consumer.subscribe(pattern=r"pat-.*")
        assert consumer.subscription() == r"pat-.*"
        with pytest.raises(IllegalStateError):
            consumer.assign([TP("pat-a", 0)])
        expected = {TP("pat-a", 0), TP("pat-b", 0), TP("pat-b", 1)}
        records = read(consumer, 5)
        poll_until([consumer], lambda: consumer.assignment() == expected)
        assert [r.offset for r in records] == list(range(5))
        consumer.commit_async(
            callback=lambda offsets, error: outcomes.append(
                (offsets, error, threading.current_thread().name)
            )
        )
        poll_until([consumer], lambda: bool(outcomes))
        offsets, error, thread = outcomes[0]
        assert error is None and offsets[TP("pat-a", 0)] == OffsetAndMetadata(5)
        assert thread == threading.current_thread().name  # callbacks run in poll's thread
        consumer.commit({TP("pat-b", 1): OffsetAndMetadata(0, "m")})
        assert consumer.committed([TP("pat-b", 1)]) == {TP("pat-b", 1): OffsetAndMetadata(0, "m")}
        consumer.unsubscribe()
        assert consumer.subscription() is None and consumer.assignment() == set()
        # Without membership, a commit is accepted only while the group has no members.
        consumer.assign([TP("pat-a", 0)])
        consumer.commit({TP("pat-a", 0): 2})
        assert consumer.committed([TP("pat-a", 0)])[TP("pat-a", 0)] == OffsetAndMetadata(2)
    with Consumer(address) as no_group:
        with pytest.raises(IllegalStateError):
            no_group.subscribe(["pat-a"])
        with pytest.raises(IllegalStateError):
            no_group.commit({TP("pat-a", 0): 1})


@pytest.mark.slow
def test_committed_offsets_survive_a_broker_restart(
    start_broker: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "restart"
    group, topic = "g-restart", "restart-t"
    broker = start_broker(*GROUP_FLAGS, data_dir=data_dir)
    create(broker.address, topic, 2)
    produce(broker.address, topic, {0: 20, 1: 20})
    with group_consumer(broker.address, group, enable_auto_commit=False) as consumer:
        consumer.subscribe([topic])
        poll_until([consumer], lambda: len(consumer.assignment()) == 2)
        consumer.commit({TP(topic, 0): OffsetAndMetadata(7, "seven"), TP(topic, 1): 12})
    broker.kill()  # SIGKILL: an acknowledged commit is durable

    again = start_broker(*GROUP_FLAGS, data_dir=data_dir)
    with group_consumer(again.address, group) as consumer:
        committed = consumer.committed([TP(topic, 0), TP(topic, 1)])
        assert committed == {
            TP(topic, 0): OffsetAndMetadata(7, "seven", -1),
            TP(topic, 1): OffsetAndMetadata(12, "", -1),
        }
        consumer.subscribe([topic])
        records = read(consumer, 13 + 8)
        offsets = sorted((r.partition, r.offset) for r in records)
        assert offsets == [(0, o) for o in range(7, 20)] + [(1, o) for o in range(12, 20)]
