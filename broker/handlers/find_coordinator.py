"""FIND_COORDINATOR: which broker coordinates a group (the leader of its offsets partition).

Answered from the metadata cache. While ``__consumer_offsets`` does not exist
yet, the request starts its creation and answers COORDINATOR_NOT_AVAILABLE
(retriable), as Kafka does.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator
from broker.handlers.group_common import error_fields
from client.protocol import InvalidGroupIdError
from client.wire import InvalidRequestError, Payload, ServerError

GROUP_KEY_TYPE = 0


class FindCoordinatorHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
        key = p.text("key")
        key_type = p.integer("key_type", GROUP_KEY_TYPE)
        if key_type != GROUP_KEY_TYPE:
            raise InvalidRequestError(f"key_type {key_type} is not supported (0 = group)")
        try:
            if not key:
                raise InvalidGroupIdError("the group id must not be empty")
            node_id, host, port = self.groups.find(key)
        except ServerError as exc:
            return {**error_fields(exc), "node_id": -1, "host": "", "port": -1}
        return {**error_fields(None), "node_id": node_id, "host": host, "port": port}
