"""METADATA: brokers, controller and topics from the cache; auto-creation of missing topics.

Answered inline from the metadata cache. When the request names topics that do
not exist, ``allow_auto_topic_creation`` is true and the broker allows it, the
topics are created with the broker's defaults (as a background task) and the
answer waits, for a few seconds at most, until they have leaders — so the
producer that asked can send at once.
"""

from __future__ import annotations

from typing import Any

from broker.config import BrokerConfig
from broker.connection import ClientConnection
from broker.metadata_cache import MetadataCache, TopicInfo
from broker.topic_admin import TopicAdmin
from broker.topic_names import is_internal, topic_name_problem
from client.protocol import (
    InvalidTopicError,
    LeaderNotAvailableError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from client.wire import InvalidRequestError, Payload, ServerError
from coordinator.errors import CoordinatorError

AUTO_CREATE_WAIT_SECONDS = 5.0


class MetadataHandler:
    def __init__(self, cache: MetadataCache, admin: TopicAdmin, config: BrokerConfig) -> None:
        self.cache = cache
        self.admin = admin
        self.config = config

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any] | None:
        raw = p.raw("topics", None)
        if raw is None:
            names = sorted(self.cache.topics)
        elif isinstance(raw, list) and all(isinstance(n, str) for n in raw):
            names = list(dict.fromkeys(raw))
        else:
            raise InvalidRequestError("topics must be a list of names or nil")
        auto = p.boolean("allow_auto_topic_creation", True) and self.config.auto_create_topics
        if raw is not None and auto:
            missing = [
                n for n in names if n not in self.cache.topics and topic_name_problem(n) is None
            ]
            if missing:
                conn.spawn(self._create_then_answer, conn, xid, names, missing)
                return None
        return self.build(names)

    async def _create_then_answer(
        self, conn: ClientConnection, xid: int, names: list[str], missing: list[str]
    ) -> None:
        for name in missing:
            try:
                assignment = self.admin.plan_topic(name, -1, -1, {})
                await self.admin.create(name, assignment)
            except TopicAlreadyExistsError:
                pass  # created by someone else meanwhile
            except (ServerError, CoordinatorError):
                continue  # reported per topic by build() below
        await self.admin.wait_until(
            lambda: all(self.admin.has_leaders(n) for n in missing), AUTO_CREATE_WAIT_SECONDS
        )
        conn.respond(xid, self.build(names))

    def build(self, names: list[str]) -> dict[str, Any]:
        cache = self.cache
        brokers = [
            {
                "node_id": b.broker_id,
                "host": b.registration.host,
                "port": b.registration.port,
                "rack": b.registration.rack or None,
            }
            for b in sorted(cache.brokers.values(), key=lambda b: b.broker_id)
        ]
        topics: list[dict[str, Any]] = []
        for name in names:
            topic = cache.topic(name)
            if topic is None:
                problem = topic_name_problem(name)
                error: ServerError = (
                    InvalidTopicError(problem)
                    if problem
                    else UnknownTopicOrPartitionError(f"no topic {name!r}")
                )
                topics.append(
                    {
                        "name": name,
                        "error_code": error.code,
                        "error_message": error.message,
                        "internal": False,
                        "partitions": [],
                    }
                )
                continue
            topics.append(_topic_entry(topic))
        return {
            "cluster_id": cache.cluster_id,
            "controller_id": cache.controller_id,
            "brokers": brokers,
            "topics": topics,
        }


def _topic_entry(topic: TopicInfo) -> dict[str, Any]:
    partitions: list[dict[str, Any]] = []
    for index in sorted(topic.assignment.partitions):
        info = topic.states.get(index)
        leader = -1 if info is None else info.leader
        code = 0 if leader >= 0 else LeaderNotAvailableError.code
        partitions.append(
            {
                "partition": index,
                "error_code": code,
                "leader": leader,
                "leader_epoch": -1 if info is None else info.leader_epoch,
                "replicas": list(topic.replicas(index)),
                "isr": [] if info is None else list(info.isr),
            }
        )
    return {
        "name": topic.name,
        "error_code": 0,
        "error_message": None,
        "internal": is_internal(topic.name),
        "partitions": partitions,
    }
