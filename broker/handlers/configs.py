"""DESCRIBE_CONFIGS (from the metadata cache) and ALTER_CONFIGS (incremental, background)."""

from __future__ import annotations

from typing import Any

from broker.config import BrokerConfig
from broker.connection import ClientConnection
from broker.metadata_cache import MetadataCache
from broker.topic_admin import TopicAdmin
from broker.topic_config import TOPIC_CONFIGS, effective
from client.protocol import UnknownTopicOrPartitionError
from client.wire import InvalidRequestError, Payload, RequestTimedOutError, ServerError
from coordinator.errors import CoordinatorError, NotConnectedError

_INT32_MAX = 2**31 - 1
ALTER_WAIT_SECONDS = 10.0


def _outcome(name: Any, error: ServerError | None) -> dict[str, Any]:
    if error is None:
        return {"name": name, "error_code": 0, "error_message": None}
    return {"name": name, "error_code": error.code, "error_message": error.message}


class DescribeConfigsHandler:
    def __init__(self, cache: MetadataCache, config: BrokerConfig) -> None:
        self.cache = cache
        self.config = config

    def __call__(self, conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for name in p.texts("topics"):
            topic = self.cache.topic(name)
            if topic is None:
                entry = _outcome(name, UnknownTopicOrPartitionError(f"no topic {name!r}"))
                entry["configs"] = []
                results.append(entry)
                continue
            configs = [
                {
                    "name": key,
                    "value": TOPIC_CONFIGS[key].render(value),
                    "is_default": is_default,
                    "read_only": False,
                    "doc": TOPIC_CONFIGS[key].doc,
                }
                for key, (value, is_default) in sorted(effective(topic.config, self.config).items())
            ]
            entry = _outcome(name, None)
            entry["configs"] = configs
            results.append(entry)
        return {"topics": results}


class AlterConfigsHandler:
    def __init__(self, admin: TopicAdmin) -> None:
        self.admin = admin

    async def __call__(self, p: Payload) -> dict[str, Any]:
        validate_only = p.boolean("validate_only", False)
        results: list[dict[str, Any]] = []
        for raw in p.array("topics"):
            t = Payload(raw)
            name = t.raw("name", None)
            try:
                if not isinstance(name, str):
                    raise InvalidRequestError("topic name must be a string")
                set_ = t.raw("set", {}) or {}
                if not isinstance(set_, dict):
                    raise InvalidRequestError("set must be a map of strings")
                delete = t.array("delete", [])
                await self.admin.alter(name, set_, delete, validate_only, ALTER_WAIT_SECONDS)
            except NotConnectedError as exc:
                results.append(_outcome(name, RequestTimedOutError(str(exc))))
                continue
            except CoordinatorError as exc:
                results.append(_outcome(name, InvalidRequestError(f"coordinator: {exc}")))
                continue
            except ServerError as exc:
                results.append(_outcome(name, exc))
                continue
            results.append(_outcome(name, None))
        return {"topics": results}
