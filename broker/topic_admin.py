"""Topic administration through the coordinator: create, delete, alter configs.

Any broker can serve these; none needs to forward to the controller, because
each write is conditional and lands on a path only the controller acts on
(Kafka's ZooKeeper-era AdminZkClient does the same):

- create writes ``/topics/<name>`` (topic id, replica assignment computed here
  from the live brokers, config overrides) with a create that fails if the topic
  exists; the controller sees the new topic and writes its partition states.
- delete creates ``/admin/delete_topics/<name>``; the controller removes the
  topic's znodes, and every broker hosting it deletes its logs.
- alter rewrites ``/topics/<name>`` with a compare-and-set on its version.

Each call then waits, up to the request's timeout, until this broker's metadata
cache shows the outcome, so a client that asks right after sees it.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import trio

from broker.config import BrokerConfig
from broker.metadata_cache import MetadataCache
from broker.metadata_sync import MetadataSync
from broker.placement import assign_replicas
from broker.topic_config import apply_alter, validate_overrides
from broker.topic_names import is_internal, validate_topic_name
from broker.znodes import (
    TopicAssignment,
    delete_topic_path,
    partitions_path,
    topic_path,
)
from client.protocol import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from client.wire import InvalidRequestError, RequestTimedOutError
from coordinator.client import AsyncCoordinatorClient
from coordinator.client.transaction import first_error
from coordinator.errors import BadVersionError, NodeExistsError, NoNodeError

ALTER_ATTEMPTS = 10
_INT32_MAX = 2**31 - 1


class TopicAdmin:
    def __init__(
        self,
        zk: AsyncCoordinatorClient,
        cache: MetadataCache,
        sync: MetadataSync,
        config: BrokerConfig,
    ) -> None:
        self.zk = zk
        self.cache = cache
        self.sync = sync
        self.config = config
        self.random = random.Random()

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` holds on the metadata cache, or ``timeout`` seconds pass."""
        with trio.move_on_after(max(0.0, timeout)):
            while not done():
                await self.sync.wait_updated()
        return done()

    def has_leaders(self, name: str) -> bool:
        topic = self.cache.topic(name)
        if topic is None:
            return False
        return all(topic.leader(p) >= 0 for p in topic.assignment.partitions)

    # ------------------------------------------------------------ create

    def plan_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: Any
    ) -> TopicAssignment:
        """Validate a new topic and compute its assignment. Raises BrokerError."""
        validate_topic_name(name)
        if name in self.cache.pending_deletions:
            raise TopicAlreadyExistsError(f"topic {name!r} is marked for deletion")
        if name in self.cache.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        partitions = self.config.num_partitions if num_partitions == -1 else num_partitions
        factor = (
            self.config.default_replication_factor
            if replication_factor == -1
            else replication_factor
        )
        if partitions < 1:
            raise InvalidPartitionsError(f"number of partitions must be >= 1, got {partitions}")
        if factor < 1 or factor > _INT32_MAX:
            raise InvalidReplicationFactorError(f"replication factor must be >= 1, got {factor}")
        if not isinstance(configs, dict):
            raise InvalidRequestError("configs must be a map of strings")
        overrides = validate_overrides(configs)
        brokers = {b: info.registration.rack for b, info in self.cache.brokers.items()}
        n = max(1, len(brokers))
        assignment = assign_replicas(
            partitions, factor, brokers, self.random.randrange(n), self.random.randrange(n)
        )
        return TopicAssignment(uuid.uuid4().hex, assignment, overrides)

    async def create(self, name: str, assignment: TopicAssignment) -> None:
        """Write the topic; raises TopicAlreadyExistsError when someone was first."""
        results = await (
            self.zk.transaction()
            .create(topic_path(name), assignment.to_bytes())
            .create(partitions_path(name))
            .commit()
        )
        error = first_error(results)
        if isinstance(error, NodeExistsError):
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if error is not None:
            raise error

    # ------------------------------------------------------------ delete

    async def request_deletion(self, name: str) -> None:
        if not self.config.delete_topic_enable:
            raise InvalidRequestError("topic deletion is disabled on this broker")
        validate_topic_name(name)
        if is_internal(name):
            raise InvalidTopicError(f"internal topic {name!r} cannot be deleted")
        if name not in self.cache.topics:
            raise UnknownTopicOrPartitionError(f"no topic {name!r}")
        with contextlib.suppress(NodeExistsError):
            await self.zk.create(delete_topic_path(name), make_parents=True)

    # ------------------------------------------------------------ configs

    async def alter(
        self,
        name: str,
        set_: dict[Any, Any],
        delete: list[Any],
        validate_only: bool,
        timeout: float,
    ) -> None:
        """Incrementally change a topic's config overrides (compare-and-set, retried)."""
        for _ in range(ALTER_ATTEMPTS):
            try:
                data, stat = await self.zk.get(topic_path(name))
            except NoNodeError:
                raise UnknownTopicOrPartitionError(f"no topic {name!r}") from None
            current = TopicAssignment.from_bytes(data)
            config = apply_alter(current.config, set_, delete)
            if validate_only or config == current.config:
                return
            try:
                new = await self.zk.set(
                    topic_path(name), replace(current, config=config).to_bytes(), stat.version
                )
            except BadVersionError:
                continue
            await self.wait_until(partial(self._reached, name, new.version), timeout)
            return
        raise RequestTimedOutError(f"topic {name!r} kept changing; alter not applied")

    def _reached(self, name: str, version: int) -> bool:
        topic = self.cache.topic(name)
        return topic is not None and topic.version >= version
