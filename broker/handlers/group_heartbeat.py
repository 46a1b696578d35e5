"""CONSUMER_GROUP_HEARTBEAT: join, heartbeat, reconcile, leave (KIP-848).

The shard decides inline (so a member's pipelined heartbeats are handled in
order), its records are appended at once, and the answer goes out once they are
durable. Group-level errors (NOT_COORDINATOR, FENCED_MEMBER_EPOCH, ...) travel
in the response's ``error_code``; a malformed request gets INVALID_REQUEST in the
envelope.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator, now_ms
from broker.groups.shard import HeartbeatRequest
from broker.handlers.group_common import (
    INT32_MAX,
    error_fields,
    optional_text,
    optional_texts,
    peer_host,
    topic_partitions,
)
from client.wire import Payload, ServerError


def parse_heartbeat(p: Payload, client_host: str) -> HeartbeatRequest:
    names = optional_texts(p, "subscribed_topic_names")
    raw_owned = p.raw("topic_partitions", None)
    rebalance = p.integer("rebalance_timeout_ms", -1, lo=-1, hi=INT32_MAX)
    return HeartbeatRequest(
        group_id=p.text("group_id"),
        member_id=p.text("member_id", ""),
        member_epoch=p.integer("member_epoch", lo=-2, hi=INT32_MAX),
        instance_id=optional_text(p, "instance_id"),
        rack_id=optional_text(p, "rack_id"),
        rebalance_timeout_ms=None if rebalance == -1 else rebalance,
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=optional_text(p, "subscribed_topic_regex"),
        server_assignor=optional_text(p, "server_assignor"),
        owned=None if raw_owned is None else topic_partitions(raw_owned, "topic_partitions"),
        client_id=optional_text(p, "client_id") or "",
        client_host=client_host,
    )


class ConsumerGroupHeartbeatHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        req = parse_heartbeat(p, peer_host(conn.peer))
        groups = self.groups
        try:
            loaded = groups.shard_for(req.group_id)
        except ServerError as exc:
            return {
                **error_fields(exc),
                "member_id": req.member_id,
                "member_epoch": req.member_epoch,
                "heartbeat_interval_ms": groups.group_config.heartbeat_interval_ms,
                "assignment": None,
            }
        outcome = loaded.shard.heartbeat(req, groups.topics, now_ms())
        if not groups.write(loaded, outcome.records):
            return {
                **error_fields(groups.outcome_error(loaded)),
                "member_id": req.member_id,
                "member_epoch": req.member_epoch,
                "heartbeat_interval_ms": groups.group_config.heartbeat_interval_ms,
                "assignment": None,
            }
        return groups.respond_when_durable(loaded, conn, xid, outcome.response)
