"""The blocking admin client: an ``AsyncAdmin`` in a background thread.

Example::

    from client import Admin, TopicPartition

    with Admin("127.0.0.1:9092") as admin:
        admin.create_topic("events", partitions=3, config={"cleanup.policy": "compact"})
        print(admin.list_topics())
        print(admin.describe_topic("events").partitions)
        admin.alter_topic_config("events", set={"retention.ms": "3600000"})
        print(admin.describe_topic_config("events")["retention.ms"].value)
        print(admin.list_offsets([TopicPartition("events", 0)], "latest"))
        print(admin.describe_group("billing").members)
        print(admin.list_group_offsets("billing"))   # committed, log end, lag
        admin.reset_offsets("billing", "events", to="earliest")  # group must be inactive
        admin.delete_topic("events")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import trio

from client.async_admin import (
    AsyncAdmin,
    GroupDescription,
    GroupListing,
    GroupOffset,
    OffsetSpec,
)
from client.config import AdminConfig
from client.io_thread import IoThread
from client.types import (
    ClusterDescription,
    ConfigEntry,
    OffsetAndTimestamp,
    TopicDescription,
    TopicPartition,
)
from client.wire import ServerError


class Admin:
    """A blocking admin client (see ``AsyncAdmin`` for the semantics of each call)."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: AdminConfig | None = None,
        **settings: Any,
    ) -> None:
        self._async = AsyncAdmin(bootstrap_servers, config, **settings)
        self.config = self._async.config
        self._io = IoThread(f"rivulet-admin-{self.config.client_id}")
        self._closed = False
        self._io.start(self._io_main)

    async def _io_main(self, nursery: trio.Nursery) -> None:
        await self._async.start(nursery)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, Any] | None = None,
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Create a topic (TopicAlreadyExistsError if it exists)."""
        self._io.run(
            lambda: self._async.create_topic(
                name,
                partitions,
                replication_factor,
                config,
                validate_only=validate_only,
                timeout=timeout,
            )
        )

    def delete_topic(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a topic (UnknownTopicOrPartitionError if it does not exist)."""
        self._io.run(lambda: self._async.delete_topic(name, timeout=timeout))

    def list_topics(self, *, internal: bool = False) -> list[str]:
        """Names of every topic, sorted."""
        return self._io.run(lambda: self._async.list_topics(internal=internal))

    def describe_topic(self, name: str) -> TopicDescription:
        """The topic's partitions with leader, leader epoch, replicas and ISR."""
        return self._io.run(self._async.describe_topic, name)

    def describe_cluster(self) -> ClusterDescription:
        """The brokers, the controller and the cluster id."""
        return self._io.run(self._async.describe_cluster)

    def describe_topic_config(self, name: str) -> dict[str, ConfigEntry]:
        """Every config of the topic, by name."""
        return self._io.run(self._async.describe_topic_config, name)

    def alter_topic_config(
        self,
        name: str,
        set: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Set and/or delete topic configs (incrementally)."""
        removed = list(delete)
        self._io.run(
            lambda: self._async.alter_topic_config(
                name, set, removed, validate_only=validate_only, timeout=timeout
            )
        )

    def elect_leaders(
        self,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, ServerError | None]:
        """Preferred-leader election; per partition None (done) or the error."""
        wanted = None if partitions is None else list(partitions)
        return self._io.run(lambda: self._async.elect_leaders(wanted, timeout=timeout))

    def reassign_partitions(
        self,
        assignments: Mapping[TopicPartition, Sequence[int]],
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, ServerError | None]:
        """New replica lists; waits until the moves are complete (per partition None
        or the error)."""
        wanted = dict(assignments)
        return self._io.run(lambda: self._async.reassign_partitions(wanted, timeout=timeout))

    def list_offsets(
        self,
        partitions: Mapping[TopicPartition, OffsetSpec] | Iterable[TopicPartition],
        spec: OffsetSpec = "latest",
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, OffsetAndTimestamp]:
        """Offsets by ``"earliest"``, ``"latest"`` or a ms timestamp."""
        parts = dict(partitions) if isinstance(partitions, Mapping) else list(partitions)
        return self._io.run(lambda: self._async.list_offsets(parts, spec, timeout=timeout))

    def list_groups(
        self, states: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> list[GroupListing]:
        """Every consumer group (optionally only those in ``states``), sorted by id."""
        wanted = None if states is None else list(states)
        return self._io.run(lambda: self._async.list_groups(wanted, timeout=timeout))

    def describe_group(self, group_id: str, *, timeout: float | None = None) -> GroupDescription:
        """State, epochs, assignor and members of a group (GroupIdNotFoundError if none)."""
        return self._io.run(lambda: self._async.describe_group(group_id, timeout=timeout))

    def delete_group(self, group_id: str, *, timeout: float | None = None) -> None:
        """Delete a group without members and its offsets (NonEmptyGroupError otherwise)."""
        self._io.run(lambda: self._async.delete_group(group_id, timeout=timeout))

    def list_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, GroupOffset]:
        """Committed offsets with log end offsets and lag, per partition."""
        wanted = None if partitions is None else list(partitions)
        return self._io.run(
            lambda: self._async.list_group_offsets(group_id, wanted, timeout=timeout)
        )

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        *,
        to: str | None = None,
        timestamp: int | None = None,
        offset: int | None = None,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> dict[TopicPartition, int]:
        """Set an inactive group's offsets of ``topic``: ``to="earliest"|"latest"``,
        ``timestamp=`` (ms) or ``offset=``; the new offsets (NonEmptyGroupError while
        the group has members)."""
        chosen = None if partitions is None else list(partitions)
        return self._io.run(
            lambda: self._async.reset_offsets(
                group_id,
                topic,
                to=to,
                timestamp=timestamp,
                offset=offset,
                partitions=chosen,
                dry_run=dry_run,
                timeout=timeout,
            )
        )

    def close(self) -> None:
        """Close connections and the I/O thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._io.alive:
            try:
                self._io.run(self._async.close)
            finally:
                self._io.stop()

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
