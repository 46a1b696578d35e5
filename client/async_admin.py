"""The trio admin client: topics, their configs and offsets, consumer groups.

Example::

    import trio
    from client import AsyncAdmin

    async def main() -> None:
        async with AsyncAdmin("127.0.0.1:9092") as admin:
            await admin.create_topic("events", partitions=6, config={"retention.ms": "86400000"})
            print(await admin.describe_topic("events"))

    trio.run(main)

Topic creation, deletion and config changes go to the controller (retried on
``NOT_CONTROLLER`` after a metadata refresh); offset lookups go to each
partition's leader; group calls go to the group's coordinator (found with
FIND_COORDINATOR, retried while it moves or loads), and ``list_groups`` asks
every broker. Server errors raise the ``client.protocol`` classes
(``TopicAlreadyExistsError``, ``UnknownTopicOrPartitionError``, ...).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from client.async_consumer import list_offsets
from client.cluster import Cluster
from client.config import AdminConfig, build_config, parse_bootstrap
from client.errors import ClientTimeoutError, NoBrokersAvailableError, ResponseTimeoutError
from client.group_membership import (
    STATIC_LEAVE_EPOCH,
    ClusterTransport,
    CommitFailedError,
    CoordinatorLink,
    commit_offsets,
    fetch_committed,
    response_error,
)
from client.protocol import (
    EARLIEST_TIMESTAMP,
    ERRORS,
    LATEST_TIMESTAMP,
    ApiKey,
    CoordinatorNotAvailableError,
    GroupIdNotFoundError,
    NonEmptyGroupError,
    NotCoordinatorError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from client.types import (
    ClusterDescription,
    ConfigEntry,
    OffsetAndTimestamp,
    TopicDescription,
    TopicPartition,
    as_topic_partition,
)
from client.wire import ConnectionLostError, ServerError

# Kafka's topic name rule: 1-249 of [a-zA-Z0-9._-].
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")

OffsetSpec = int | str


def check_topic_name(name: Any) -> str:
    """``name`` if it is a legal topic name; TypeError/ValueError otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"a topic name must be a str, got {name!r}")
    if not _TOPIC_NAME.match(name) or name in (".", ".."):
        raise ValueError(
            f"illegal topic name {name!r}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_', '-'"
        )
    return name


def _entry_of(answer: Any, group_id: str) -> Mapping[str, Any]:
    for entry in answer.get("groups") or ():
        if entry.get("group_id") == group_id:
            result: Mapping[str, Any] = entry
            return result
    raise ConnectionLostError(f"the coordinator's answer does not mention group {group_id!r}")


def _check_configs(config: Mapping[str, Any] | None) -> dict[str, str]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of str to str, got {config!r}")
    out: dict[str, str] = {}
    for k, v in config.items():
        if not isinstance(k, str):
            raise TypeError(f"config names must be str, got {k!r}")
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str | int | float):
            out[k] = str(v)
        else:
            raise TypeError(f"config {k!r} must be a str or number, got {v!r}")
    return out


def _offset_spec(spec: OffsetSpec) -> int:
    if spec == "earliest":
        return EARLIEST_TIMESTAMP
    if spec == "latest":
        return LATEST_TIMESTAMP
    if type(spec) is int and (spec >= 0 or spec in (EARLIEST_TIMESTAMP, LATEST_TIMESTAMP)):
        return spec
    raise ValueError(f"an offset spec is 'earliest', 'latest' or a ms timestamp, got {spec!r}")


GROUP_STATES = ("empty", "assigning", "reconciling", "stable")


@dataclass(frozen=True, slots=True)
class GroupListing:
    """A consumer group as ``list_groups`` returns it: its id and state ("empty",
    "assigning", "reconciling" or "stable")."""

    group_id: str
    state: str


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """One member of a consumer group: who it is, what it subscribes to, what it owns
    (``assignment``), what it is giving up (``pending_revocation``) and what the
    coordinator wants it to own (``target_assignment``)."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rack_id: str | None
    member_epoch: int
    state: str
    subscribed_topics: tuple[str, ...]
    subscribed_pattern: str | None
    assignment: frozenset[TopicPartition]
    pending_revocation: frozenset[TopicPartition]
    target_assignment: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group as ``describe_group`` returns it: state, epochs, the assignor
    in use and the members."""

    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: tuple[MemberDescription, ...]

    def owner(self, partition: TopicPartition) -> MemberDescription | None:
        """The member that owns ``partition`` now (or is revoking it), if any."""
        for member in self.members:
            if partition in member.assignment or partition in member.pending_revocation:
                return member
        return None


@dataclass(frozen=True, slots=True)
class GroupOffset:
    """A group's committed offset of one partition (None: nothing committed), its
    metadata, the partition's log end offset (None: unknown, e.g. the topic is gone)
    and the lag between them."""

    offset: int | None
    metadata: str
    log_end_offset: int | None

    @property
    def lag(self) -> int | None:
        """Records between the committed offset and the log end (None if either is
        unknown)."""
        if self.offset is None or self.log_end_offset is None:
            return None
        return max(0, self.log_end_offset - self.offset)


def _check_group_id(group_id: Any) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise ValueError(f"a group id must be a non-empty str, got {group_id!r}")
    return group_id


def _assignment(raw: Any) -> frozenset[TopicPartition]:
    return frozenset(
        TopicPartition(str(e["topic"]), int(p)) for e in raw or () for p in e["partitions"]
    )


def _member(raw: Mapping[str, Any]) -> MemberDescription:
    return MemberDescription(
        member_id=str(raw["member_id"]),
        instance_id=raw.get("instance_id"),
        client_id=str(raw.get("client_id") or ""),
        client_host=str(raw.get("client_host") or ""),
        rack_id=raw.get("rack_id"),
        member_epoch=int(raw["member_epoch"]),
        state=str(raw.get("state") or ""),
        subscribed_topics=tuple(raw.get("subscribed_topic_names") or ()),
        subscribed_pattern=raw.get("subscribed_topic_regex") or None,
        assignment=_assignment(raw.get("assignment")),
        pending_revocation=_assignment(raw.get("pending_revocation")),
        target_assignment=_assignment(raw.get("target_assignment")),
    )


class AsyncAdmin:
    """A trio admin client. Use ``async with``, or ``await admin.start(nursery)``
    and ``await admin.close()``."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        config: AdminConfig | None = None,
        **settings: Any,
    ) -> None:
        cfg: AdminConfig = build_config(AdminConfig, config, settings)
        self.config = cfg
        self._retry_backoff = cfg.retry_backoff_ms / 1000.0
        self._api_timeout = cfg.default_api_timeout_ms / 1000.0
        self.cluster = Cluster(
            parse_bootstrap(bootstrap_servers),
            request_timeout=cfg.request_timeout_ms / 1000.0,
            connect_timeout=cfg.connect_timeout_ms / 1000.0,
            retry_backoff=self._retry_backoff,
            metadata_max_age=cfg.metadata_max_age_ms / 1000.0,
            max_frame=cfg.max_frame_bytes,
            allow_auto_topic_creation=False,
        )
        self._nursery_manager: Any = None
        self._started = False
        self._closed = False

    async def start(self, nursery: trio.Nursery) -> None:
        """Attach to ``nursery`` (connections run there until ``close``)."""
        self._started = True
        await self.cluster.start(nursery)

    async def __aenter__(self) -> AsyncAdmin:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        await self.start(nursery)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self.close()
        finally:
            manager, self._nursery_manager = self._nursery_manager, None
            result: bool | None = await manager.__aexit__(exc_type, exc, tb)
        return result

    async def close(self) -> None:
        """Close every connection."""
        if not self._closed:
            self._closed = True
            await self.cluster.aclose()

    def _timeout(self, timeout: float | None) -> float:
        return self._api_timeout if timeout is None else timeout

    # -- plumbing ---------------------------------------------------------------------------

    async def _controller_call(self, api: int, payload: Any, timeout: float) -> Any:
        """A request to the controller, retried (after a metadata refresh) while it
        fails retriably: NOT_CONTROLLER, a lost connection, a timeout."""
        if not self._started:
            raise RuntimeError("start the admin client first (async with / start())")
        last: BaseException | None = None
        with trio.move_on_after(timeout):
            while True:
                try:
                    node = await self.cluster.controller(timeout)
                    return await self.cluster.call(node, api, payload)
                except ServerError as exc:
                    if not exc.retriable:
                        raise
                    last = exc
                except (ConnectionLostError, ResponseTimeoutError, NoBrokersAvailableError) as exc:
                    last = exc
                await trio.sleep(self._retry_backoff)
                with contextlib.suppress(
                    ConnectionLostError, ResponseTimeoutError, NoBrokersAvailableError
                ):
                    await self.cluster.refresh()
        raise ClientTimeoutError(f"admin request (api {api}) did not succeed in {timeout}s: {last}")

    @staticmethod
    def _raise_for(entry: Mapping[str, Any]) -> None:
        code = int(entry.get("error_code", 0) or 0)
        if code:
            raise ERRORS.exception(code, entry.get("error_message") or str(entry.get("name", "")))

    # -- topics -----------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        config: Mapping[str, Any] | None = None,
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Create a topic. ``partitions``/``replication_factor`` of -1 take the
        broker's defaults. Raises TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidReplicationFactorError, InvalidConfigError, ..."""
        check_topic_name(name)
        for label, value in (
            ("partitions", partitions),
            ("replication_factor", replication_factor),
        ):
            if type(value) is not int or (value < 1 and value != -1):
                raise ValueError(f"{label} must be a positive int (or -1), got {value!r}")
        configs = _check_configs(config)
        t = self._timeout(timeout)
        answer = await self._controller_call(
            ApiKey.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": partitions,
                        "replication_factor": replication_factor,
                        "configs": configs,
                    }
                ],
                "timeout_ms": int(t * 1000),
                "validate_only": validate_only,
            },
            t,
        )
        for entry in answer["topics"]:
            if entry.get("name") == name:
                self._raise_for(entry)
        self.cluster.metadata.invalidate(name)

    async def delete_topic(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a topic. Raises UnknownTopicOrPartitionError if it does not exist."""
        check_topic_name(name)
        t = self._timeout(timeout)
        answer = await self._controller_call(
            ApiKey.DELETE_TOPICS, {"topics": [name], "timeout_ms": int(t * 1000)}, t
        )
        for entry in answer["topics"]:
            if entry.get("name") == name:
                self._raise_for(entry)
        self.cluster.metadata.invalidate(name)

    async def _metadata(self, topics: list[str] | None) -> Any:
        payload = {"topics": topics, "allow_auto_topic_creation": False}
        answer = await self.cluster.call_any(ApiKey.METADATA, payload)
        self.cluster.metadata.update(answer, self.cluster.clock(), full=topics is None)
        return answer

    async def list_topics(self, *, internal: bool = False) -> list[str]:
        """Names of every topic (internal ones such as ``__consumer_offsets`` only
        if ``internal``), sorted."""
        answer = await self._metadata(None)
        return sorted(
            t["name"]
            for t in answer.get("topics") or ()
            if not t.get("error_code") and (internal or not t.get("internal"))
        )

    async def describe_topic(self, name: str) -> TopicDescription:
        """The topic's partitions with leader, leader epoch, replicas and ISR."""
        check_topic_name(name)
        await self._metadata([name])
        tm = self.cluster.metadata.topics.get(name)
        if tm is None:
            raise UnknownTopicOrPartitionError(name)
        if tm.error_code:
            raise ERRORS.exception(tm.error_code, tm.error_message or name)
        return tm.describe()

    async def describe_cluster(self) -> ClusterDescription:
        """The brokers, the controller and the cluster id."""
        answer = await self._metadata([])
        md = self.cluster.metadata
        del answer
        return ClusterDescription(
            md.cluster_id, md.controller_id, sorted(md.brokers.values(), key=lambda b: b.node_id)
        )

    # -- configs ----------------------------------------------------------------------------

    async def describe_topic_config(self, name: str) -> dict[str, ConfigEntry]:
        """Every config of the topic (defaults included), by name."""
        check_topic_name(name)
        answer = await self.cluster.call_any(ApiKey.DESCRIBE_CONFIGS, {"topics": [name]})
        for entry in answer["topics"]:
            if entry.get("name") != name:
                continue
            self._raise_for(entry)
            return {
                c["name"]: ConfigEntry(
                    c["name"],
                    c.get("value"),
                    bool(c.get("is_default", False)),
                    bool(c.get("read_only", False)),
                    str(c.get("doc") or ""),
                )
                for c in entry.get("configs") or ()
            }
        raise UnknownTopicOrPartitionError(name)

    async def alter_topic_config(
        self,
        name: str,
        set: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        *,
        validate_only: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Change configs incrementally: ``set`` these values, ``delete`` these
        names (back to their defaults). Raises InvalidConfigError for an unknown
        name or a bad value."""
        check_topic_name(name)
        values = _check_configs(set)
        removed = list(delete)
        if not all(isinstance(k, str) for k in removed):
            raise TypeError("delete must be an iterable of config names")
        if not values and not removed:
            raise ValueError("nothing to change: give set= and/or delete=")
        t = self._timeout(timeout)
        answer = await self._controller_call(
            ApiKey.ALTER_CONFIGS,
            {
                "topics": [{"name": name, "set": values, "delete": removed}],
                "validate_only": validate_only,
            },
            t,
        )
        for entry in answer["topics"]:
            if entry.get("name") == name:
                self._raise_for(entry)

    # -- replication ------------------------------------------------------------------------

    @staticmethod
    def _partition_outcomes(answer: Any) -> dict[TopicPartition, ServerError | None]:
        out: dict[TopicPartition, ServerError | None] = {}
        for t in answer.get("topics") or ():
            for p in t.get("partitions") or ():
                tp = TopicPartition(str(t["topic"]), int(p["partition"]))
                code = int(p.get("error_code", 0) or 0)
                out[tp] = (
                    ERRORS.exception(code, p.get("error_message") or f"{tp.topic}-{tp.partition}")
                    if code
                    else None
                )
        return out

    async def elect_leaders(
        self,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, ServerError | None]:
        """Move leadership back to each partition's preferred replica (the first of its
        replicas); every partition when ``partitions`` is None. Per partition: None
        when done, else the error (ElectionNotNeededError when it leads already,
        PreferredLeaderNotAvailableError, RequestTimedOutError, ...)."""
        wanted: list[dict[str, Any]] | None = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for tp in partitions:
                tp = as_topic_partition(tp)
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            wanted = [{"topic": t, "partitions": ps} for t, ps in by_topic.items()]
        t = self._timeout(timeout)
        answer = await self._controller_call(
            ApiKey.ELECT_LEADERS,
            {"election_type": 0, "topic_partitions": wanted, "timeout_ms": int(t * 1000)},
            t + self._retry_backoff + 5.0,
        )
        return self._partition_outcomes(answer)

    async def reassign_partitions(
        self,
        assignments: Mapping[TopicPartition, Sequence[int]],
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, ServerError | None]:
        """Give partitions new replica lists (the first replica becomes the preferred
        leader) and wait until the moves are complete. Per partition: None when done,
        else the error (InvalidReplicaAssignmentError, ReassignmentInProgressError,
        RequestTimedOutError while still moving, ...)."""
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for raw_tp, replicas in assignments.items():
            tp = as_topic_partition(raw_tp)
            ids = list(replicas)
            if not ids or not all(type(r) is int and r >= 0 for r in ids):
                raise ValueError(f"replicas of {tp} must be non-negative broker ids, got {ids!r}")
            by_topic.setdefault(tp.topic, []).append({"partition": tp.partition, "replicas": ids})
        t = self._timeout(timeout)
        answer = await self._controller_call(
            ApiKey.ALTER_PARTITION_REASSIGNMENTS,
            {
                "timeout_ms": int(t * 1000),
                "topics": [{"topic": name, "partitions": ps} for name, ps in by_topic.items()],
            },
            t + self._retry_backoff + 5.0,
        )
        return self._partition_outcomes(answer)

    # -- offsets ----------------------------------------------------------------------------

    async def list_offsets(
        self,
        partitions: Mapping[TopicPartition, OffsetSpec] | Iterable[TopicPartition],
        spec: OffsetSpec = "latest",
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, OffsetAndTimestamp]:
        """Offsets by spec: ``"earliest"`` (log start), ``"latest"`` (log end) or a
        ms timestamp (the first offset whose batch max timestamp is >= it; offset
        -1 when there is none). Give a mapping to ask a different spec per
        partition, or partitions and one ``spec`` for all."""
        if isinstance(partitions, Mapping):
            req = {as_topic_partition(tp): _offset_spec(s) for tp, s in partitions.items()}
        else:
            code = _offset_spec(spec)
            req = {as_topic_partition(tp): code for tp in partitions}
        if not self._started:
            raise RuntimeError("start the admin client first (async with / start())")
        return await list_offsets(self.cluster, req, self._timeout(timeout), self._retry_backoff)

    # -- consumer groups --------------------------------------------------------------------

    def _group_link(self, group_id: str) -> CoordinatorLink:
        if not self._started:
            raise RuntimeError("start the admin client first (async with / start())")
        return CoordinatorLink(
            ClusterTransport(self.cluster),
            group_id,
            request_timeout=self.config.request_timeout_ms / 1000.0,
            retry_backoff=self._retry_backoff,
            retry_backoff_max=self.config.retry_backoff_max_ms / 1000.0,
        )

    async def _group_entry(
        self, group_id: str, api: int, payload: dict[str, Any], timeout: float
    ) -> Mapping[str, Any]:
        """The entry of ``group_id`` in a DESCRIBE/DELETE answer of its coordinator,
        retried while the coordinator moves, loads or cannot be reached."""
        link = self._group_link(group_id)
        last: BaseException | None = None
        failures = 0
        with trio.move_on_after(timeout):
            while True:
                try:
                    answer = await link.call(api, payload)
                    entry = _entry_of(answer, group_id)
                    error = response_error(entry)
                    if error is None:
                        return entry
                    if isinstance(error, NotCoordinatorError | CoordinatorNotAvailableError):
                        link.reset()
                    raise error
                except (ConnectionLostError, ResponseTimeoutError) as exc:
                    last = exc
                except ServerError as exc:
                    if not exc.retriable:
                        raise
                    last = exc
                failures += 1
                await trio.sleep(min(1.0, self._retry_backoff * 2 ** (failures - 1)))
        raise ClientTimeoutError(f"group {group_id}: no answer from its coordinator: {last}")

    async def list_groups(
        self, states: Iterable[str] | None = None, *, timeout: float | None = None
    ) -> list[GroupListing]:
        """Every consumer group of the cluster (each broker lists those it coordinates),
        sorted by id; ``states`` keeps only groups in those states ("empty",
        "assigning", "reconciling", "stable")."""
        wanted = sorted({s.lower() for s in states or ()})
        for state in wanted:
            if state not in GROUP_STATES:
                raise ValueError(f"unknown group state {state!r}; one of {GROUP_STATES}")
        if not self._started:
            raise RuntimeError("start the admin client first (async with / start())")
        t = self._timeout(timeout)
        out: dict[str, GroupListing] = {}
        last: BaseException | None = None
        with trio.move_on_after(t):
            await self._metadata([])
            todo = sorted(self.cluster.metadata.brokers)
            while todo:
                node = todo[0]
                try:
                    answer = await self.cluster.call(
                        node, ApiKey.LIST_GROUPS, {"states_filter": wanted}
                    )
                    self._raise_for(answer)
                except (ConnectionLostError, ResponseTimeoutError) as exc:
                    last = exc
                except ServerError as exc:
                    if not exc.retriable:
                        raise
                    last = exc
                else:
                    for g in answer.get("groups") or ():
                        out[g["group_id"]] = GroupListing(g["group_id"], g["group_state"])
                    todo.pop(0)
                    continue
                await trio.sleep(self._retry_backoff)
            return [out[g] for g in sorted(out)]
        raise ClientTimeoutError(f"listing the groups did not complete in {t}s: {last}")

    async def describe_group(
        self, group_id: str, *, timeout: float | None = None
    ) -> GroupDescription:
        """The group's state, epochs, assignor and members with their assignments.
        Raises GroupIdNotFoundError if there is no such group."""
        _check_group_id(group_id)
        entry = await self._group_entry(
            group_id,
            ApiKey.CONSUMER_GROUP_DESCRIBE,
            {"group_ids": [group_id]},
            self._timeout(timeout),
        )
        return GroupDescription(
            group_id=group_id,
            state=str(entry["group_state"]),
            group_epoch=int(entry["group_epoch"]),
            assignment_epoch=int(entry["assignment_epoch"]),
            assignor=str(entry.get("assignor_name") or ""),
            members=tuple(_member(m) for m in entry.get("members") or ()),
        )

    async def delete_group(self, group_id: str, *, timeout: float | None = None) -> None:
        """Delete a group without members, with its committed offsets. Raises
        NonEmptyGroupError while it has members, GroupIdNotFoundError if unknown."""
        _check_group_id(group_id)
        await self._group_entry(
            group_id, ApiKey.DELETE_GROUPS, {"groups": [group_id]}, self._timeout(timeout)
        )

    async def list_group_offsets(
        self,
        group_id: str,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[TopicPartition, GroupOffset]:
        """The group's committed offsets with each partition's log end offset and the
        lag: of every partition it committed for, or of ``partitions`` (whose
        ``offset`` is None where nothing is committed). Sorted by partition."""
        _check_group_id(group_id)
        wanted = None if partitions is None else [as_topic_partition(p) for p in partitions]
        t = self._timeout(timeout)
        try:
            committed = await fetch_committed(self._group_link(group_id), wanted, timeout=t)
        except trio.TooSlowError:
            raise ClientTimeoutError(
                f"group {group_id}: committed offsets did not arrive in {t}s"
            ) from None
        if wanted is None:
            committed = {tp: om for tp, om in committed.items() if om is not None}
        ends = await self._log_ends(committed, t)
        return {
            tp: GroupOffset(
                None if om is None else om.offset,
                "" if om is None else om.metadata,
                ends.get(tp),
            )
            for tp, om in sorted(committed.items())
        }

    async def _log_ends(
        self, partitions: Iterable[TopicPartition], timeout: float
    ) -> dict[TopicPartition, int]:
        """Log end offsets of the partitions that exist (others are left out)."""
        tps = set(partitions)
        if not tps:
            return {}
        await self._metadata(sorted({tp.topic for tp in tps}))
        md = self.cluster.metadata
        live = {tp: LATEST_TIMESTAMP for tp in tps if md.partition_info(tp) is not None}
        found = await list_offsets(self.cluster, live, timeout, self._retry_backoff)
        return {tp: v.offset for tp, v in found.items()}

    async def reset_offsets(
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
        """Set the group's committed offsets of ``topic`` (all its partitions, or those
        numbered in ``partitions``): ``to="earliest"`` or ``"latest"``, ``timestamp``
        (ms: the first offset at or after it, the log end where none is), or
        ``offset`` (clamped to each partition's earliest..latest). Returns the new
        offsets; ``dry_run`` only computes them.

        Only for a group without members: NonEmptyGroupError names the active members
        otherwise (stop the consumers first). UnknownTopicOrPartitionError if the topic
        or a partition does not exist."""
        _check_group_id(group_id)
        check_topic_name(topic)
        given = [v for v in (to, timestamp, offset) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of to=, timestamp= and offset=")
        if to is not None and to not in ("earliest", "latest"):
            raise ValueError(f"to must be 'earliest' or 'latest', got {to!r}")
        for label, value in (("timestamp", timestamp), ("offset", offset)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{label} must be a non-negative int, got {value!r}")
        t = self._timeout(timeout)
        await self._check_inactive(group_id, t)
        described = await self.describe_topic(topic)
        numbers = [p.partition for p in described.partitions]
        if partitions is not None:
            chosen = sorted(set(partitions))
            missing = [p for p in chosen if p not in numbers]
            if missing:
                raise UnknownTopicOrPartitionError(
                    f"{topic} has no partition {', '.join(map(str, missing))}"
                )
            numbers = chosen
        tps = [TopicPartition(topic, p) for p in numbers]
        latest = await self.list_offsets(tps, "latest", timeout=t)
        new: dict[TopicPartition, int]
        if to == "latest":
            new = {tp: latest[tp].offset for tp in tps}
        elif to == "earliest":
            found = await self.list_offsets(tps, "earliest", timeout=t)
            new = {tp: found[tp].offset for tp in tps}
        elif timestamp is not None:
            found = await self.list_offsets(tps, timestamp, timeout=t)
            new = {
                tp: found[tp].offset if found[tp].offset >= 0 else latest[tp].offset for tp in tps
            }
        else:
            earliest = await self.list_offsets(tps, "earliest", timeout=t)
            wanted = offset if offset is not None else 0
            new = {tp: min(max(wanted, earliest[tp].offset), latest[tp].offset) for tp in tps}
        if dry_run:
            return new
        try:
            await commit_offsets(self._group_link(group_id), new, timeout=t)
        except trio.TooSlowError:
            raise ClientTimeoutError(
                f"group {group_id}: the reset did not complete in {t}s"
            ) from None
        except CommitFailedError as exc:
            if any(isinstance(e, UnknownMemberIdError) for e in exc.errors.values()):
                raise NonEmptyGroupError(
                    f"group {group_id!r} has active members: stop its consumers. Offsets "
                    "can only be reset while the group has no members"
                ) from exc
            raise
        return new

    async def _check_inactive(self, group_id: str, timeout: float) -> None:
        """NonEmptyGroupError if the group has members (an unknown group is fine)."""
        try:
            group = await self.describe_group(group_id, timeout=timeout)
        except GroupIdNotFoundError:
            return
        if not group.members:
            return
        active = [m.member_id for m in group.members if m.member_epoch != STATIC_LEAVE_EPOCH]
        away = [m.instance_id or m.member_id for m in group.members if m.member_id not in active]
        reasons = []
        if active:
            reasons.append(
                f"{len(active)} active member(s) ({', '.join(active)}): stop its consumers"
            )
        if away:
            reasons.append(
                f"{len(away)} static member(s) that left temporarily (instance "
                f"{', '.join(away)}): kept until the group session timeout expires"
            )
        raise NonEmptyGroupError(
            f"group {group_id!r} has {'; and '.join(reasons)}. Offsets can only be reset "
            "while the group has no members"
        )
