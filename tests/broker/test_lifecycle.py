"""Broker lifecycle: clean restart, deletion, configs, flags, and a two-broker cluster."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from client.protocol import (
    ApiKey,
    LeaderNotAvailableError,
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
)
from tests.broker.rpc import batch, connect, create_topic, fetch, produce, values
from tests.procs import ServerProcess


async def metadata(address: str, topics: list[str] | None, auto: bool = False) -> dict:  # type: ignore[type-arg]
    async with connect(address) as ch:
        result: dict = await ch.call(  # type: ignore[type-arg]
            ApiKey.METADATA, 0, {"topics": topics, "allow_auto_topic_creation": auto}
        )
        return result


async def test_clean_restart_keeps_data_and_bumps_the_leader_epoch(
    start_broker: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "restart"
    broker = start_broker(data_dir=data_dir)
    async with connect(broker.address) as ch:
        await create_topic(ch, "kept", 1)
        for i in range(5):
            assert (await produce(ch, "kept", 0, batch(b"%d" % i), acks=1))["error_code"] == 0
    assert broker.stop() == 0
    assert (data_dir / "kept-0" / ".clean_shutdown").exists()
    restarted = start_broker(data_dir=data_dir)
    assert "truncating" not in restarted.output()
    meta = await metadata(restarted.address, ["kept"])
    assert meta["topics"][0]["partitions"][0]["leader_epoch"] == 1
    async with connect(restarted.address) as ch:
        r = await fetch(ch, "kept", 0, 0)
        assert [v for _, v in values(r["records"])] == [b"%d" % i for i in range(5)]
        assert (await produce(ch, "kept", 0, batch(b"5"), acks=-1))["base_offset"] == 5


async def test_delete_removes_the_logs_and_a_new_topic_starts_empty(
    start_broker: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "delete"
    broker = start_broker("--no-auto-create-topics", data_dir=data_dir)
    async with connect(broker.address) as ch:
        await create_topic(ch, "gone", 2)
        await produce(ch, "gone", 0, batch(b"old"), acks=-1)
        assert (data_dir / "gone-0").is_dir()
        r = await ch.call(ApiKey.DELETE_TOPICS, 0, {"topics": ["gone"], "timeout_ms": 10_000})
        assert r["topics"][0]["error_code"] == 0
        with trio.fail_after(10):
            while (data_dir / "gone-0").exists() or (data_dir / "gone-1").exists():
                await trio.sleep(0.05)
        assert (await produce(ch, "gone", 0, batch(b"x")))["error_code"] == (
            UnknownTopicOrPartitionError.code
        )
        # Auto-creation is off on this broker.
        meta = await ch.call(
            ApiKey.METADATA, 0, {"topics": ["gone"], "allow_auto_topic_creation": True}
        )
        assert meta["topics"][0]["error_code"] == UnknownTopicOrPartitionError.code
        await create_topic(ch, "gone", 1)
        r2 = await produce(ch, "gone", 0, batch(b"new"), acks=-1)
        assert r2["base_offset"] == 0
        assert values((await fetch(ch, "gone", 0, 0))["records"]) == [(0, b"new")]


async def test_configs_describe_and_alter(shared_broker: ServerProcess) -> None:
    async with connect(shared_broker.address) as ch:
        await create_topic(ch, "configs", 1, {"retention.ms": "60000"})
        r = await ch.call(
            ApiKey.ALTER_CONFIGS,
            0,
            {
                "topics": [
                    {
                        "name": "configs",
                        "set": {"segment.bytes": "1048576", "cleanup.policy": "compact"},
                        "delete": ["retention.ms"],
                    }
                ],
                "validate_only": False,
            },
        )
        assert r["topics"][0]["error_code"] == 0
        d = await ch.call(ApiKey.DESCRIBE_CONFIGS, 0, {"topics": ["configs", "nope"]})
        configs = {c["name"]: c for c in d["topics"][0]["configs"]}
        assert configs["segment.bytes"]["value"] == "1048576"
        assert not configs["segment.bytes"]["is_default"]
        assert configs["cleanup.policy"]["value"] == "compact"
        assert configs["retention.ms"]["is_default"]
        assert d["topics"][1]["error_code"] == UnknownTopicOrPartitionError.code
        bad = await ch.call(
            ApiKey.ALTER_CONFIGS,
            0,
            {
                "topics": [{"name": "configs", "set": {"retention.ms": "forever"}, "delete": []}],
                "validate_only": False,
            },
        )
        assert bad["topics"][0]["error_code"] != 0
        # The topic still works after its config changed.
        assert (await produce(ch, "configs", 0, batch(b"v", key=b"k"), acks=-1))["error_code"] == 0


def test_bad_config_file_and_locked_data_dir(broker_server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("no_such_setting = 1\n")
    bad = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "unknown key(s) no_such_setting" in bad.stderr
    data_dir = Path(broker_server.argv[broker_server.argv.index("--data-dir") + 1])
    locked = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--port",
            "0",
            "--embedded-coordinator-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert locked.returncode == 2 and "in use by another broker" in locked.stderr


async def test_two_brokers_share_one_coordinator(
    start_coordinator: Callable[..., ServerProcess],
    start_broker: Callable[..., ServerProcess],
) -> None:
    zk = start_coordinator()
    b0 = start_broker("--coordinator", zk.address, "--id", "0")
    b1 = start_broker("--coordinator", zk.address, "--id", "1")
    async with connect(b0.address) as ch:
        r = await ch.call(
            ApiKey.CREATE_TOPICS,
            0,
            {
                "topics": [
                    {"name": "spread", "num_partitions": 4, "replication_factor": 1, "configs": {}}
                ],
                "timeout_ms": 10_000,
            },
        )
        assert r["topics"][0]["error_code"] == 0
    meta = await metadata(b1.address, ["spread"])
    assert sorted(b["node_id"] for b in meta["brokers"]) == [0, 1]
    leaders = {p["partition"]: p["leader"] for p in meta["topics"][0]["partitions"]}
    assert sorted(set(leaders.values())) == [0, 1]
    address = {0: b0.address, 1: b1.address}
    for p, leader in leaders.items():
        async with connect(address[leader]) as ch:
            assert (await produce(ch, "spread", p, batch(b"ok"), acks=-1))["error_code"] == 0
        async with connect(address[1 - leader]) as ch:
            wrong = await produce(ch, "spread", p, batch(b"no"), acks=-1)
            assert wrong["error_code"] == NotLeaderOrFollowerError.code
    # A broker that stops takes its (single-replica) partitions offline.
    assert b1.stop() == 0
    with trio.fail_after(15):
        while True:
            meta = await metadata(b0.address, ["spread"])
            states = {p["partition"]: p for p in meta["topics"][0]["partitions"]}
            if all(states[p]["leader"] == -1 for p, lead in leaders.items() if lead == 1):
                break
            await trio.sleep(0.1)
    for p, leader in leaders.items():
        if leader == 1:
            assert states[p]["error_code"] == LeaderNotAvailableError.code
            async with connect(b0.address) as ch:
                r = await produce(ch, "spread", p, batch(b"x"))
                assert r["error_code"] == LeaderNotAvailableError.code


async def test_retention_and_compaction_run_in_the_background(
    start_broker: Callable[..., ServerProcess],
) -> None:
    broker = start_broker("--log-maintenance-interval-ms", "200")
    async with connect(broker.address) as ch:
        await create_topic(ch, "retained", 1, {"segment.bytes": "1024", "retention.bytes": "2048"})
        await create_topic(
            ch, "compacted", 1, {"segment.bytes": "1024", "cleanup.policy": "compact"}
        )
        for i in range(30):
            assert (await produce(ch, "retained", 0, batch(b"r" * 200), acks=-1))["error_code"] == 0
            key = b"k%d" % (i % 3)
            r = await produce(ch, "compacted", 0, batch(b"v%d" % i, key=key), acks=-1)
            assert r["error_code"] == 0
        request = {
            "topics": [{"topic": "retained", "partitions": [{"partition": 0, "timestamp": -2}]}]
        }
        with trio.fail_after(20):
            while True:
                r = await ch.call(ApiKey.LIST_OFFSETS, 0, request)
                if r["topics"][0]["partitions"][0]["offset"] > 0:
                    break
                await trio.sleep(0.1)
        with trio.fail_after(20):
            while True:
                got: list[bytes | None] = []
                offset = 0
                while True:
                    part = await fetch(ch, "compacted", 0, offset)
                    records = values(part["records"])
                    if not records:
                        break
                    got += [v for _, v in records]
                    offset = records[-1][0] + 1
                if len(got) < 30:
                    break
                await trio.sleep(0.1)
        # The newest value of every key survives compaction.
        assert {b"v27", b"v28", b"v29"} <= set(got)


@pytest.mark.slow
async def test_broker_rejoins_after_its_session_expired(
    start_coordinator: Callable[..., ServerProcess],
    start_broker: Callable[..., ServerProcess],
) -> None:
    zk = start_coordinator()
    broker = start_broker("--coordinator", zk.address, "--session-timeout-ms", "2000")
    async with connect(broker.address) as ch:
        await create_topic(ch, "rejoin", 1)
    broker.pause()  # SIGSTOP: the coordinator expires the session
    await trio.sleep(5)
    broker.resume()
    with trio.fail_after(30):
        while True:
            meta = await metadata(broker.address, ["rejoin"])
            partition = meta["topics"][0]["partitions"][0]
            registered = [b["node_id"] for b in meta["brokers"]] == [0]
            # Re-registered under a new session, so re-elected with a new leader epoch.
            if registered and partition["leader"] == 0 and partition["leader_epoch"] >= 1:
                break
            await trio.sleep(0.2)
    assert meta["controller_id"] == 0
    async with connect(broker.address) as ch:
        assert (await produce(ch, "rejoin", 0, batch(b"back"), acks=-1))["error_code"] == 0
