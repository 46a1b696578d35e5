"""Raw-protocol helpers for the consumer-group tests."""

from __future__ import annotations

from typing import Any

import trio

from client.protocol import ApiKey
from client.wire import RpcChannel


async def find_coordinator(ch: RpcChannel, group: str, timeout: float = 15.0) -> dict[str, Any]:
    """FIND_COORDINATOR until it answers (the offsets topic is created on demand), then
    wait until the coordinator has loaded the group's partition (as clients retry)."""
    with trio.fail_after(timeout):
        while True:
            r: dict[str, Any] = await ch.call(
                ApiKey.FIND_COORDINATOR, 0, {"key": group, "key_type": 0}
            )
            if r["error_code"] == 0:
                break
            await trio.sleep(0.05)
        while True:
            fetched = await ch.call(ApiKey.OFFSET_FETCH, 0, {"group_id": group, "topics": []})
            if fetched["error_code"] == 0:
                return r
            await trio.sleep(0.05)


async def heartbeat(ch: RpcChannel, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "member_id": "",
        "member_epoch": 0,
        "subscribed_topic_names": None,
        "topic_partitions": None,
    }
    payload.update(fields)
    result: dict[str, Any] = await ch.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, payload)
    return result


async def commit(
    ch: RpcChannel,
    group: str,
    offsets: dict[tuple[str, int], int],
    member_id: str = "",
    member_epoch: int = -1,
    metadata: str = "",
) -> dict[tuple[str, int], int]:
    """OFFSET_COMMIT; the error code of each partition."""
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, p), offset in offsets.items():
        by_topic.setdefault(topic, []).append(
            {"partition": p, "offset": offset, "leader_epoch": -1, "metadata": metadata}
        )
    r = await ch.call(
        ApiKey.OFFSET_COMMIT,
        0,
        {
            "group_id": group,
            "member_id": member_id,
            "member_epoch": member_epoch,
            "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        },
    )
    return {
        (t["topic"], p["partition"]): p["error_code"] for t in r["topics"] for p in t["partitions"]
    }


async def fetch_offsets(ch: RpcChannel, group: str) -> dict[tuple[str, int], int]:
    r = await ch.call(ApiKey.OFFSET_FETCH, 0, {"group_id": group, "topics": None})
    assert r["error_code"] == 0, r
    return {(t["topic"], p["partition"]): p["offset"] for t in r["topics"] for p in t["partitions"]}


async def describe(ch: RpcChannel, group: str) -> dict[str, Any]:
    r = await ch.call(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, {"group_ids": [group]})
    result: dict[str, Any] = r["groups"][0]
    return result
