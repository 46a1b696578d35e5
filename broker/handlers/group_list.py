"""LIST_GROUPS: the groups this broker coordinates (an admin client asks every broker).

COORDINATOR_LOAD_IN_PROGRESS while some of this broker's offsets partitions are
still loading (the list would be incomplete); ``states_filter`` keeps only
groups in those states (case-insensitive; empty = all).
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator
from broker.handlers.group_common import error_fields
from client.protocol import CoordinatorLoadInProgressError
from client.wire import Payload


class ListGroupsHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
        wanted = {s.lower() for s in p.texts("states_filter", [])}
        if self.groups.loading:
            error = CoordinatorLoadInProgressError("some group partitions are still loading")
            return {**error_fields(error), "groups": []}
        out: list[dict[str, Any]] = []
        for loaded in sorted(self.groups.loaded_shards(), key=lambda s: s.index):
            for group_id, state in loaded.shard.list_groups():
                if wanted and state.value not in wanted:
                    continue
                out.append(
                    {"group_id": group_id, "group_state": state.value, "protocol_type": "consumer"}
                )
        out.sort(key=lambda g: g["group_id"])
        return {**error_fields(None), "groups": out}
