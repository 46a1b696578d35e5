"""``python -m bench groups``: consumer-group rebalance time and group consumption throughput.

A broker runs in its own process; each configuration gets a fresh one.

- **Rebalance time** (100 partitions, 10 members): the members are
  ``client.group_membership.GroupMember`` drivers in this process (one trio loop,
  one connection), so the figure is the protocol's, not process start-up. The
  time is measured from a member joining (the 10th), leaving cleanly (``leave``:
  revocation, then the leave heartbeat) or being killed (its task cancelled: no
  more heartbeats, no goodbye) until every member is stable again with a
  balanced assignment of all 100 partitions. With the broker's default heartbeat
  interval (3 s, session timeout 10 s) and a short one (500 ms, session 3 s).
  Target: a join or a clean leave settles in under 100 ms plus one heartbeat
  interval (``..._target_ms``); after a kill the session must expire first
  (``..._kill_target_ms``: session timeout + one interval + 100 ms).
- **Group consumption**: N records of 100 bytes in a 12-partition topic are read
  by a group of 1, 2 and 4 consumer processes (blocking ``Consumer``,
  ``python -m bench.groups child ...``). The consumers join and wait, their
  partitions paused, until the group is stable; then all are told to go, and the
  figure is N over the time from "go" to the last record.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from bench.processes import BROKER_READY, ServerProcess, broker_argv
from bench.produce import PRODUCER_SETTINGS, VALUE_SIZE
from bench.report import Result, progress, result
from bench.stats import median
from client import Admin, Consumer, Producer, RebalanceListener, TopicPartition
from client.group_membership import ChannelTransport, GroupMember, MemberState
from client.protocol import GroupIdNotFoundError

PARTITIONS = 100
MEMBERS = 10
CONSUME_PARTITIONS = 12
CONSUMER_COUNTS = (1, 2, 4)
TARGET_SLACK_MS = 100.0
REPO = Path(__file__).resolve().parents[1]
CONSUMER_SETTINGS: dict[str, object] = {
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "max_partition_fetch_bytes": 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
}


# ---------------------------------------------------------------- rebalance time


class Group:
    """GroupMembers of one group, each running in its own cancel scope."""

    def __init__(self, transport: ChannelTransport, group_id: str, topic: str) -> None:
        self.transport = transport
        self.group_id = group_id
        self.topic = topic
        self.members: list[GroupMember] = []
        self.scopes: dict[int, trio.CancelScope] = {}

    def add(self, nursery: trio.Nursery) -> GroupMember:
        member = GroupMember(self.transport, self.group_id, topics=[self.topic])
        scope = trio.CancelScope()
        self.members.append(member)
        self.scopes[id(member)] = scope
        nursery.start_soon(self._run, member, scope)
        return member

    @staticmethod
    async def _run(member: GroupMember, scope: trio.CancelScope) -> None:
        with scope:
            await member.run()

    def settled(self) -> bool:
        """Every member stable, and together they own every partition, balanced."""
        if not self.members:
            return False
        owned = [m.assignment() for m in self.members]
        if any(m.state is not MemberState.STABLE for m in self.members):
            return False
        sizes = [len(o) for o in owned]
        union: set[TopicPartition] = set().union(*owned)
        return len(union) == sum(sizes) == PARTITIONS and max(sizes) - min(sizes) <= 1

    async def wait_settled(self, since: float, timeout: float) -> float:
        """Milliseconds from ``since`` (trio time) until ``settled()``."""
        with trio.fail_after(timeout):
            while not self.settled():
                await trio.sleep(0.001)
        return (trio.current_time() - since) * 1000.0

    async def leave(self, member: GroupMember) -> None:
        self.members.remove(member)
        await member.leave(timeout=30)

    def kill(self, member: GroupMember) -> None:
        self.members.remove(member)
        self.scopes[id(member)].cancel()


async def _rebalances(
    address: str, group_id: str, heartbeat_ms: int, session_ms: int, rounds: int, kills: int
) -> tuple[list[float], list[float], list[float]]:
    """(join, leave, kill) settle times in ms."""
    joins: list[float] = []
    leaves: list[float] = []
    deaths: list[float] = []
    hb = heartbeat_ms / 1000.0
    limit = 30.0 + 3 * session_ms / 1000.0
    async with ChannelTransport([address]) as transport, trio.open_nursery() as nursery:
        group = Group(transport, group_id, "bench-groups")
        for _ in range(MEMBERS - 1):
            group.add(nursery)
        await group.wait_settled(trio.current_time(), limit)
        for i in range(rounds):
            await trio.sleep(random.uniform(0.1, 0.1 + hb))  # a random heartbeat phase
            start = trio.current_time()
            group.add(nursery)
            joins.append(await group.wait_settled(start, limit))
            await trio.sleep(random.uniform(0.1, 0.1 + hb))
            start = trio.current_time()
            await group.leave(random.choice(group.members))
            leaves.append(await group.wait_settled(start, limit))
            progress(
                f"heartbeat {heartbeat_ms} ms, round {i + 1}/{rounds}: join "
                f"{joins[-1]:.0f} ms, leave {leaves[-1]:.0f} ms"
            )
        for i in range(kills):
            group.add(nursery)
            await group.wait_settled(trio.current_time(), limit)
            await trio.sleep(random.uniform(0.1, 0.1 + hb))
            start = trio.current_time()
            group.kill(random.choice(group.members))
            deaths.append(await group.wait_settled(start, limit))
            progress(f"heartbeat {heartbeat_ms} ms, kill {i + 1}/{kills}: {deaths[-1]:.0f} ms")
        for member in list(group.members):
            await group.leave(member)
        nursery.cancel_scope.cancel()
    return joins, leaves, deaths


def rebalance_time(
    tmp: Path, heartbeat_ms: int, session_ms: int, rounds: int, kills: int
) -> list[Result]:
    server = start_broker(tmp / f"hb{heartbeat_ms}", heartbeat_ms, session_ms)
    try:
        with Admin(server.address) as admin:
            admin.create_topic("bench-groups", partitions=PARTITIONS)
        joins, leaves, deaths = trio.run(
            _rebalances, server.address, "bench-rebalance", heartbeat_ms, session_ms, rounds, kills
        )
    finally:
        server.stop()
    name = f"hb{heartbeat_ms}"
    out = [
        result(f"{name}_join_settle_ms", median(joins), "ms", samples=joins),
        result(f"{name}_leave_settle_ms", median(leaves), "ms", samples=leaves),
        result(f"{name}_join_leave_target_ms", heartbeat_ms + TARGET_SLACK_MS, "ms"),
    ]
    if deaths:
        out += [
            result(f"{name}_kill_settle_ms", median(deaths), "ms", samples=deaths),
            result(f"{name}_kill_target_ms", session_ms + heartbeat_ms + TARGET_SLACK_MS, "ms"),
        ]
    return out


# ---------------------------------------------------------------- group consumption


class _PauseUntilGo(RebalanceListener):
    """Keeps assigned partitions paused until the consumer starts counting (callbacks
    run in poll, in the thread that sets ``started``)."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.started = False

    def on_partitions_assigned(self, partitions: set[TopicPartition]) -> None:
        if not self.started:
            self.consumer.pause(*partitions)


def child(bootstrap: str, group: str, topic: str) -> int:
    """One consumer of the throughput run: joins, waits for "go" on stdin, then prints
    ``<records so far> <monotonic time of the last poll>`` after every poll that
    returned records, until stdin closes."""
    go = threading.Event()
    done = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                go.set()
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    with Consumer(bootstrap, group_id=group, **CONSUMER_SETTINGS) as consumer:  # type: ignore[arg-type]
        listener = _PauseUntilGo(consumer)
        consumer.subscribe([topic], listener=listener)
        print("joined", flush=True)
        while not go.is_set() and not done.is_set():
            if consumer.poll(timeout=0.05):
                raise RuntimeError("records arrived before the start")
        listener.started = True
        consumer.resume(*consumer.assignment())
        count = 0
        while not done.is_set():
            records = consumer.poll(timeout=0.1, max_records=50_000)
            if records:
                count += len(records)
                print(f"{count} {time.monotonic()}", flush=True)
    return 0


class ChildProcess:
    """A ``child`` consumer process and what it reported."""

    def __init__(self, address: str, group: str, topic: str) -> None:
        argv = [sys.executable, "-m", "bench.groups", "child", address, group, topic]
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.count = 0
        self.last = 0.0
        self.joined = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        if self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            if line.startswith("joined"):
                self.joined.set()
                continue
            count, _, when = line.partition(" ")
            self.count, self.last = int(count), float(when)

    def send(self, line: str) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def _wait_stable(admin: Admin, group: str, members: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_group(group)
        except GroupIdNotFoundError:
            pass  # no member has joined yet
        else:
            owned = sum(len(m.assignment) for m in desc.members)
            if (
                desc.state == "stable"
                and len(desc.members) == members
                and owned == CONSUME_PARTITIONS
            ):
                return
        time.sleep(0.05)
    raise RuntimeError(f"group {group} did not settle with {members} members in {timeout}s")


def consume_once(address: str, admin: Admin, topic: str, group: str, k: int, n: int) -> float:
    """Records per second of ``k`` consumer processes reading ``n`` records."""
    children = [ChildProcess(address, group, topic) for _ in range(k)]
    try:
        _wait_stable(admin, group, k, 60.0)
        start = time.monotonic()
        for c in children:
            c.send("go")
        deadline = start + 300.0
        while sum(c.count for c in children) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{k} consumers read {sum(c.count for c in children)} of {n}")
            if any(c.proc.poll() is not None for c in children):
                raise RuntimeError("a consumer process exited early")
            time.sleep(0.01)
        end = max(c.last for c in children)
    finally:
        for c in children:
            c.stop()
    return n / (end - start)


def consumption(tmp: Path, quick: bool) -> list[Result]:
    n = 200_000 if quick else 2_000_000
    runs = 1 if quick else 3
    server = start_broker(tmp / "consume", 500, 3000)
    topic = "bench-group-consume"
    out: list[Result] = []
    try:
        address = server.address
        with Admin(address) as admin:
            admin.create_topic(topic, partitions=CONSUME_PARTITIONS)
            progress(f"produce {n:,} records of {VALUE_SIZE} B to {CONSUME_PARTITIONS} partitions")
            value = b"v" * VALUE_SIZE
            with Producer(address, acks=1, **PRODUCER_SETTINGS) as producer:  # type: ignore[arg-type]
                for _ in range(n):
                    producer.send(topic, value)
                producer.flush()
            for k in CONSUMER_COUNTS:
                figures = []
                for run in range(runs):
                    group = f"bench-consume-{k}-{run}"
                    rate = consume_once(address, admin, topic, group, k, n)
                    figures.append(rate)
                    progress(
                        f"{k} consumer process(es), run {run + 1}/{runs}: {rate:,.0f} records/s"
                    )
                out.append(result(f"consume_{k}_procs_records_per_s", median(figures), "records/s"))
    finally:
        server.stop()
    return out


# ---------------------------------------------------------------- running


def start_broker(data_dir: Path, heartbeat_ms: int, session_ms: int) -> ServerProcess:
    argv = broker_argv(
        data_dir,
        "--log-level",
        "WARNING",
        "--group-heartbeat-interval-ms",
        str(heartbeat_ms),
        "--group-session-timeout-ms",
        str(session_ms),
        "--offsets-topic-num-partitions",
        "4",
    )
    return ServerProcess(argv, ready=BROKER_READY).start()


def run(quick: bool = False) -> list[Result]:
    out: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-groups-") as tmp:
        base = Path(tmp)
        if quick:
            out += rebalance_time(base, 500, 3000, rounds=2, kills=1)
        else:
            out += rebalance_time(base, 3000, 10_000, rounds=5, kills=2)
            out += rebalance_time(base, 500, 3000, rounds=10, kills=3)
        out += consumption(base, quick)
    return out


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["child"]:
        if len(argv) != 4:
            print("usage: python -m bench.groups child BOOTSTRAP GROUP TOPIC", file=sys.stderr)
            return 2
        return child(argv[1], argv[2], argv[3])
    from bench.report import print_table

    print_table("groups", run(quick="--quick" in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
