"""DELETE_GROUPS: remove empty groups with their offsets (tombstones in the offsets topic).

Per group: NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND if it does
not exist, NOT_COORDINATOR (and friends) when another broker coordinates it.
Answered once the tombstones are durable.
"""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from broker.groups.coordinator import GroupCoordinator, LoadedShard
from broker.handlers.group_common import error_fields
from client.wire import Payload, ServerError


class DeleteGroupsHandler:
    def __init__(self, groups: GroupCoordinator) -> None:
        self.groups = groups

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        groups = self.groups
        entries: list[tuple[dict[str, Any], LoadedShard | None]] = []
        for group_id in p.texts("groups"):
            entry: dict[str, Any] = {"group_id": group_id}
            try:
                loaded = groups.shard_for(group_id)
            except ServerError as exc:
                entry.update(error_fields(exc))
                entries.append((entry, None))
                continue
            outcome = loaded.shard.delete_group(group_id)
            if not groups.write(loaded, outcome.records):
                entry.update(error_fields(groups.outcome_error(loaded)))
                entries.append((entry, None))
                continue
            entry.update(error_fields(outcome.response))
            entries.append((entry, loaded if outcome.records else None))

        def finish() -> None:
            for entry, loaded in entries:
                if loaded is not None:
                    error = groups.outcome_error(loaded)
                    if error is not None:
                        entry.update(error_fields(error))
            conn.respond(xid, {"groups": [e for e, _ in entries]})

        partitions = [loaded.partition for _, loaded in entries if loaded is not None]
        if groups.when_durable(partitions, finish):
            return None
        return {"groups": [e for e, _ in entries]}
