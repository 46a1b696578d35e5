"""OFFSET_FETCH: a group's committed offsets (-1 where none), from the coordinator's memory.

With ``member_id`` set, the member epoch is checked as for a commit
(UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH); "" reads without membership. The
answer waits for pending writes of the group's partition to be durable, so it
never shows a commit that could still be lost.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator
from broker.handlers.group_common import INT32_MAX, error_fields
from client.wire import InvalidRequestError, Payload, ServerError


def parse_wanted(p: Payload) -> list[tuple[str, list[int]]] | None:
    raw = p.raw("topics", None)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequestError("field 'topics' must be a list or nil")
    wanted: list[tuple[str, list[int]]] = []
    for entry in raw:
        tp = Payload(entry)
        parts = tp.array("partitions")
        if not all(type(x) is int and 0 <= x <= INT32_MAX for x in parts):
            raise InvalidRequestError("partitions must be non-negative integers")
        wanted.append((tp.text("topic"), parts))
    return wanted


class OffsetFetchHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        group_id = p.text("group_id")
        wanted = parse_wanted(p)
        member_id = p.text("member_id", "")
        member_epoch = p.integer("member_epoch", -1, lo=-2, hi=INT32_MAX)
        try:
            loaded = self.groups.shard_for(group_id)
        except ServerError as exc:
            return {**error_fields(exc), "topics": []}
        response = loaded.shard.fetch_offsets(group_id, wanted, member_id, member_epoch)
        return self.groups.respond_when_durable(loaded, conn, xid, response)
