"""CONSUMER_GROUP_DESCRIBE: members, assignments, epochs and state of groups.

Each group gets its own outcome: NOT_COORDINATOR (and friends) when another
broker coordinates it, GROUP_ID_NOT_FOUND when it does not exist.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator
from broker.handlers.group_common import error_fields
from client.wire import Payload, ServerError


class ConsumerGroupDescribeHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        out: list[dict[str, Any]] = []
        touched = []
        for group_id in p.texts("group_ids"):
            try:
                loaded = self.groups.shard_for(group_id)
            except ServerError as exc:
                out.append(
                    {
                        "group_id": group_id,
                        **error_fields(exc),
                        "group_state": "dead",
                        "group_epoch": -1,
                        "assignment_epoch": -1,
                        "assignor_name": "",
                        "members": [],
                    }
                )
                continue
            touched.append(loaded.partition)
            out.append(loaded.shard.describe(group_id))
        response = {"groups": out}
        if self.groups.when_durable(touched, lambda: conn.respond(xid, response)):
            return None
        return response
