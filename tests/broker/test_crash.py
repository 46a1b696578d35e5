"""kill -9 during acks=all production: after a restart every acknowledged record is
there exactly once, and nothing that was never sent appears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from client.protocol import ApiKey
from client.wire import ConnectionLostError
from tests.broker.rpc import batch, connect, create_topic, fetch, produce, produce_request, values
from tests.procs import ServerProcess

IN_FLIGHT = 16


async def produce_until_killed(
    address: str, topic: str, partition: int, acked: list[bytes], sent: set[bytes]
) -> None:
    """Pipelined acks=all produces of unique values until the connection dies."""
    async with connect(address) as ch:
        pending: list[tuple[Any, list[bytes]]] = []
        i = 0
        try:
            while True:
                while len(pending) < IN_FLIGHT:
                    vals = [f"p{partition}-{i}-{j}".encode() for j in range(5)]
                    i += 1
                    sent.update(vals)
                    slot = ch.send(
                        ApiKey.PRODUCE, 0, produce_request(topic, partition, batch(*vals), -1)
                    )
                    pending.append((slot, vals))
                slot, vals = pending.pop(0)
                await slot.event.wait()
                if slot.error is not None:
                    return
                part = slot.payload["topics"][0]["partitions"][0]
                assert part["error_code"] == 0, part
                acked.extend(vals)
        except ConnectionLostError:
            return


@pytest.mark.slow
async def test_kill_dash_nine_keeps_every_acknowledged_record(
    start_broker: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "crash"
    broker = start_broker(data_dir=data_dir)
    async with connect(broker.address) as ch:
        assert (await create_topic(ch, "crash", 2))["error_code"] == 0
    acked: dict[int, list[bytes]] = {0: [], 1: []}
    sent: set[bytes] = set()
    async with trio.open_nursery() as nursery:
        for p in (0, 1):
            nursery.start_soon(produce_until_killed, broker.address, "crash", p, acked[p], sent)
        await trio.sleep(1.5)
        broker.kill()  # SIGKILL
    assert acked[0] and acked[1]

    restarted = start_broker(data_dir=data_dir)
    async with connect(restarted.address) as ch:
        # The restarted broker cleared its dead process's registration and /controller at
        # once and leads again under a new leader epoch.
        meta = await ch.call(ApiKey.METADATA, 0, {"topics": ["crash"]})
        assert meta["controller_id"] == 0
        assert [p["leader_epoch"] for p in meta["topics"][0]["partitions"]] == [1, 1]
        for p in (0, 1):
            got: list[bytes] = []
            offset = 0
            with trio.fail_after(30):
                while True:
                    r = await fetch(ch, "crash", p, offset, max_wait_ms=100)
                    assert r["error_code"] == 0, r
                    records = values(r["records"])
                    if not records:
                        break
                    got += [v for _, v in records if v is not None]
                    offset = records[-1][0] + 1
            assert len(got) == len(set(got)), "a record is there twice"
            assert set(got) <= sent, "a record that was never sent"
            position = {v: i for i, v in enumerate(got)}
            missing = [v for v in acked[p] if v not in position]
            assert not missing, f"{len(missing)} acknowledged records lost"
            order = [position[v] for v in acked[p]]
            assert order == sorted(order), "acknowledged records out of order"
        # The restarted broker takes new writes after the recovered ones.
        r = await produce(ch, "crash", 0, batch(b"after"), acks=-1)
        assert r["error_code"] == 0 and r["base_offset"] >= len(acked[0])
