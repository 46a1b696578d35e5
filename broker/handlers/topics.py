"""CREATE_TOPICS and DELETE_TOPICS (background handlers: they talk to the coordinator).

Each topic gets its own outcome. Once a topic is written the request waits, up
to ``timeout_ms``, until every partition has a leader (create) or the topic is
gone (delete) in this broker's metadata; if that takes longer the topic's
outcome is REQUEST_TIMED_OUT, though the operation still completes, as in Kafka.
With ``timeout_ms`` 0 the request does not wait.
"""

from __future__ import annotations

from typing import Any

from broker.topic_admin import TopicAdmin
from client.wire import InvalidRequestError, Payload, RequestTimedOutError, ServerError
from coordinator.errors import CoordinatorError, NotConnectedError

_INT32_MAX = 2**31 - 1


def _outcome(name: Any, error: ServerError | None) -> dict[str, Any]:
    if error is None:
        return {"name": name, "error_code": 0, "error_message": None}
    return {"name": name, "error_code": error.code, "error_message": error.message}


def _coordinator_failure(exc: CoordinatorError) -> ServerError:
    if isinstance(exc, NotConnectedError):
        return RequestTimedOutError(f"coordinator unavailable: {exc.message}")
    return InvalidRequestError(f"coordinator refused the change: {exc}")


class CreateTopicsHandler:
    def __init__(self, admin: TopicAdmin) -> None:
        self.admin = admin

    async def __call__(self, p: Payload) -> dict[str, Any]:
        timeout = p.integer("timeout_ms", 30_000, lo=0, hi=_INT32_MAX) / 1000.0
        validate_only = p.boolean("validate_only", False)
        requested = [Payload(raw) for raw in p.array("topics")]
        results: list[dict[str, Any]] = []
        created: list[str] = []
        for t in requested:
            name = t.raw("name", None)
            try:
                if not isinstance(name, str):
                    raise InvalidRequestError("topic name must be a string")
                assignment = self.admin.plan_topic(
                    name,
                    t.integer("num_partitions", -1, lo=-1, hi=_INT32_MAX),
                    t.integer("replication_factor", -1, lo=-1, hi=_INT32_MAX),
                    t.raw("configs", {}) or {},
                )
                if not validate_only:
                    await self.admin.create(name, assignment)
                    created.append(name)
            except CoordinatorError as exc:
                results.append(_outcome(name, _coordinator_failure(exc)))
                continue
            except ServerError as exc:
                results.append(_outcome(name, exc))
                continue
            results.append(_outcome(name, None))
        if created and timeout > 0:
            await self.admin.wait_until(
                lambda: all(self.admin.has_leaders(n) for n in created), timeout
            )
            for entry in results:
                name = entry["name"]
                if name in created and not self.admin.has_leaders(name):
                    late = RequestTimedOutError(f"topic {name!r} was created; leaders pending")
                    entry.update(_outcome(name, late))
        return {"topics": results}


class DeleteTopicsHandler:
    def __init__(self, admin: TopicAdmin) -> None:
        self.admin = admin

    async def __call__(self, p: Payload) -> dict[str, Any]:
        timeout = p.integer("timeout_ms", 30_000, lo=0, hi=_INT32_MAX) / 1000.0
        names = p.texts("topics")
        results: list[dict[str, Any]] = []
        requested: list[str] = []
        for name in names:
            try:
                await self.admin.request_deletion(name)
            except CoordinatorError as exc:
                results.append(_outcome(name, _coordinator_failure(exc)))
                continue
            except ServerError as exc:
                results.append(_outcome(name, exc))
                continue
            requested.append(name)
            results.append(_outcome(name, None))
        cache = self.admin.cache
        if requested and timeout > 0:
            await self.admin.wait_until(
                lambda: all(n not in cache.topics for n in requested), timeout
            )
            for entry in results:
                name = entry["name"]
                if name in requested and name in cache.topics:
                    late = RequestTimedOutError(f"deletion of {name!r} is still in progress")
                    entry.update(_outcome(name, late))
        return {"topics": results}
