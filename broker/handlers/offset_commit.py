"""OFFSET_COMMIT: store a group's offsets, durably, checking the committer's member epoch.

A member commits with its member id and current member epoch: an unknown
member gets UNKNOWN_MEMBER_ID, a newer epoch than the coordinator's
FENCED_MEMBER_EPOCH, an older one STALE_MEMBER_EPOCH (the member should retry
once its next heartbeat told it the current epoch). ``member_id`` "" commits
without membership: allowed only while the group has no members (admin resets,
manual assignment). The answer goes out once the offset records are durable in
``__consumer_offsets``.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator, now_ms
from broker.groups.shard import CommitEntry
from broker.handlers.group_common import INT32_MAX, error_fields
from client.wire import Payload, ServerError

_INT64_MAX = 2**63 - 1


def parse_entries(p: Payload) -> list[CommitEntry]:
    entries: list[CommitEntry] = []
    for raw_topic in p.array("topics"):
        tp = Payload(raw_topic)
        topic = tp.text("topic")
        for raw_part in tp.array("partitions"):
            pp = Payload(raw_part)
            entries.append(
                CommitEntry(
                    topic,
                    pp.integer("partition", lo=0, hi=INT32_MAX),
                    pp.integer("offset", lo=0, hi=_INT64_MAX),
                    pp.integer("leader_epoch", -1, lo=-1, hi=INT32_MAX),
                    pp.text("metadata", ""),
                )
            )
    return entries


def commit_response(results: list[tuple[CommitEntry, ServerError | None]]) -> dict[str, Any]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for entry, error in results:
        topics.setdefault(entry.topic, []).append(
            {"partition": entry.partition, **error_fields(error)}
        )
    return {"topics": [{"topic": t, "partitions": parts} for t, parts in topics.items()]}


class OffsetCommitHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        group_id = p.text("group_id")
        member_id = p.text("member_id", "")
        member_epoch = p.integer("member_epoch", -1, lo=-2, hi=INT32_MAX)
        entries = parse_entries(p)
        groups = self.groups
        try:
            loaded = groups.shard_for(group_id)
        except ServerError as exc:
            return commit_response([(e, exc) for e in entries])
        outcome = loaded.shard.commit_offsets(group_id, member_id, member_epoch, entries, now_ms())
        if not groups.write(loaded, outcome.records):
            error = groups.outcome_error(loaded)
            return commit_response([(e, error) for e in entries])
        return groups.respond_when_durable(loaded, conn, xid, commit_response(outcome.response))
