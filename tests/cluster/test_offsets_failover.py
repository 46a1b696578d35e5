"""``__consumer_offsets`` is replicated: committed offsets survive losing the coordinator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from client.protocol import CONSUMER_OFFSETS_TOPIC, ApiKey
from client.wire import RivuletError
from tests.cluster.harness import Cluster, call, led_state, wait_for

pytestmark = pytest.mark.slow

GROUP = "survivors"


async def find_coordinator(cluster: Cluster, via: int) -> tuple[int, str] | None:
    answer = await call(
        cluster.address(via), ApiKey.FIND_COORDINATOR, {"key": GROUP, "key_type": 0}
    )
    if answer.get("error_code"):
        return None
    return int(answer["node_id"]), f"{answer['host']}:{answer['port']}"


async def test_committed_offsets_survive_the_coordinators_death(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3)

    async def found() -> tuple[int, str] | None:
        return await find_coordinator(cluster, 0)

    node, address = await wait_for(found, 30, "a group coordinator")
    state = await led_state(cluster.address(0), CONSUMER_OFFSETS_TOPIC, 0)
    assert len(state["replicas"]) == 3, "the offsets topic is replicated 3 times"
    commit: dict[str, Any] = {
        "group_id": GROUP,
        "member_id": "",
        "member_epoch": -1,
        "topics": [
            {
                "topic": "orders",
                "partitions": [
                    {"partition": p, "offset": 100 + p, "leader_epoch": -1, "metadata": "m"}
                    for p in range(3)
                ],
            }
        ],
    }

    async def committed() -> bool:
        try:
            answer = await call(address, ApiKey.OFFSET_COMMIT, commit)
        except RivuletError:
            return False
        return all(p["error_code"] == 0 for t in answer["topics"] for p in t["partitions"])

    await wait_for(committed, 30, "the commit accepted")

    async def in_sync() -> bool:
        topic = await call(
            cluster.address(0),
            ApiKey.METADATA,
            {"topics": [CONSUMER_OFFSETS_TOPIC], "allow_auto_topic_creation": False},
        )
        return all(len(p["isr"]) == 3 for p in topic["topics"][0]["partitions"])

    await wait_for(in_sync, 20, "every offsets partition fully in sync")
    await trio.sleep(0.5)
    cluster.kill(node)
    survivor = next(b for b in range(3) if b != node)

    async def moved() -> tuple[int, str] | None:
        found = await find_coordinator(cluster, survivor)
        return found if found is not None and found[0] != node else None

    _, new_address = await wait_for(moved, 20, "a new group coordinator")
    fetch = {"group_id": GROUP, "topics": None, "member_id": "", "member_epoch": -1}

    async def offsets() -> dict[int, int] | None:
        try:
            answer = await call(new_address, ApiKey.OFFSET_FETCH, fetch)
        except RivuletError:
            return None
        if answer.get("error_code"):
            return None
        return {
            p["partition"]: p["offset"]
            for t in answer["topics"]
            if t["topic"] == "orders"
            for p in t["partitions"]
        }

    assert await wait_for(offsets, 20, "the committed offsets") == {0: 100, 1: 101, 2: 102}
