"""Consumer-group membership, client side: the KIP-848 heartbeat protocol.

Two layers, so the consumer's integration stays thin:

``Membership`` — a sans-IO state machine (no trio, no clock: ``now`` is passed
in). It builds each CONSUMER_GROUP_HEARTBEAT, digests the answers and errors,
and says what to do next with the partitions: ``next_action()`` returns
``Revoke`` (partitions the coordinator took away: run
``on_partitions_revoked``, commit, stop fetching), ``Assign`` (new partitions:
start fetching, run ``on_partitions_assigned``) or ``Lose`` (the member was
fenced: its partitions may already belong to someone else, so
``on_partitions_lost`` and no commit). The caller reports each one done with
``action_done``; a revocation is then acknowledged on the next heartbeat, which
lets the coordinator give those partitions to their new owner. Revocations come
before assignments. On FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID the member
loses its partitions and rejoins with epoch 0.

``GroupMember`` — the async (trio) driver: a heartbeat task and a
reconciliation task, so slow rebalance callbacks never delay heartbeats. It
finds the coordinator (FIND_COORDINATOR) and talks to it through a
``GroupTransport``: two coroutines, ``call_any`` (any broker) and
``call_node`` (one broker), each sending one request and returning the response
payload or raising (``ServerError`` subclasses for error responses,
``ConnectionLostError`` and friends for transport failures).
``ChannelTransport`` implements it over plain ``RpcChannel`` connections;
``ClusterTransport`` adapts a consumer's connection manager. Commits go through
``GroupMember.commit`` (member id and current epoch attached; a
STALE_MEMBER_EPOCH commit is retried after the next heartbeat).

Example::

    async with ChannelTransport(["127.0.0.1:9092"]) as transport:
        member = GroupMember(transport, "billing", topics=["invoices"], listener=my_listener)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(member.run)
            await member.wait_stable(timeout=30)
            ...
            await member.commit({TopicPartition("invoices", 0): OffsetAndMetadata(42)})
            await member.leave()
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import trio

from client.cluster import Cluster
from client.errors import ClientError, NoBrokersAvailableError, ResponseTimeoutError
from client.protocol import (
    ERRORS,
    ApiKey,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    FencedMemberEpochError,
    NotCoordinatorError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    UnreleasedInstanceIdError,
)
from client.types import TopicPartition
from client.wire import ConnectionLostError, RivuletError, RpcChannel, ServerError

log = logging.getLogger(__name__)

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
DEFAULT_REBALANCE_TIMEOUT_MS = 300_000

#: Errors after which the coordinator must be looked up again.
_REDISCOVER = (NotCoordinatorError, CoordinatorNotAvailableError)
#: Errors worth retrying as they are, after a backoff.
_RETRY = (CoordinatorLoadInProgressError, UnreleasedInstanceIdError)
#: Errors that end the membership: the member lost its partitions and rejoins.
_FENCED = (FencedMemberEpochError, UnknownMemberIdError)


class GroupMembershipError(ClientError):
    """The coordinator refused the membership for good (e.g. FENCED_INSTANCE_ID, an
    unsupported assignor, an invalid group id); ``cause`` is its error."""

    def __init__(self, message: str, cause: ServerError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class CommitFailedError(ClientError):
    """A commit was refused; ``errors`` holds the error of each failed partition."""

    def __init__(self, message: str, errors: Mapping[TopicPartition, ServerError]) -> None:
        super().__init__(message)
        self.errors = dict(errors)


class OffsetAndMetadata(NamedTuple):
    """A committed position: the next offset to consume, and free-form metadata."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1


class ConsumerGroupMetadata(NamedTuple):
    """Who a consumer is in its group right now (``Consumer.group_metadata()``):
    ``member_id`` is "" and ``member_epoch`` 0 until it has joined."""

    group_id: str
    member_id: str
    member_epoch: int
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class CoordinatorNode:
    """The broker that coordinates a group."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# ---------------------------------------------------------------- rebalance actions


@dataclass(frozen=True, slots=True)
class Revoke:
    """Give these partitions up (commit first if you want): the target no longer has them."""

    partitions: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class Assign:
    """Start consuming these partitions."""

    partitions: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class Lose:
    """The membership ended (fenced or forgotten): these partitions may already be someone
    else's; drop them without committing."""

    partitions: frozenset[TopicPartition]


RebalanceAction = Revoke | Assign | Lose


class MemberState(Enum):
    UNSUBSCRIBED = "unsubscribed"
    JOINING = "joining"
    STABLE = "stable"
    RECONCILING = "reconciling"
    FENCED = "fenced"
    LEAVING = "leaving"
    LEFT = "left"
    FATAL = "fatal"


class ErrorAction(Enum):
    """What a failed heartbeat calls for (returned by ``Membership.on_heartbeat_error``)."""

    RETRY = "retry"
    REDISCOVER = "rediscover"
    REJOIN = "rejoin"
    FATAL = "fatal"


def _tps_payload(partitions: Iterable[TopicPartition]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())]


def _tps_from(raw: Any) -> frozenset[TopicPartition]:
    out: set[TopicPartition] = set()
    for entry in raw or ():
        topic = entry["topic"]
        out.update(TopicPartition(topic, p) for p in entry["partitions"])
    return frozenset(out)


def response_error(payload: Any) -> ServerError | None:
    """The error a group response carries in its ``error_code`` field, if any."""
    code = payload.get("error_code", 0) if isinstance(payload, dict) else 0
    if not code:
        return None
    return ERRORS.exception(code, payload.get("error_message") or "")


# ---------------------------------------------------------------- the sans-IO core


class Membership:
    """One member's side of the group protocol (sans-IO; times in seconds, any clock)."""

    def __init__(
        self,
        group_id: str,
        *,
        instance_id: str | None = None,
        rack_id: str | None = None,
        server_assignor: str | None = None,
        rebalance_timeout_ms: int = DEFAULT_REBALANCE_TIMEOUT_MS,
        client_id: str = "",
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
    ) -> None:
        if not group_id:
            raise ValueError("a group id must not be empty")
        self.group_id = group_id
        self.instance_id = instance_id
        self.rack_id = rack_id
        self.server_assignor = server_assignor
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.client_id = client_id
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max

        self.state = MemberState.UNSUBSCRIBED
        self.member_id = ""
        self.member_epoch = JOIN_EPOCH
        #: Partitions this member owns (every action reported done).
        self.owned: frozenset[TopicPartition] = frozenset()
        #: The assignment the coordinator last sent.
        self.target: frozenset[TopicPartition] = frozenset()
        self.heartbeat_interval = 0.0
        self.fatal_error: ServerError | None = None
        self.topics: tuple[str, ...] | None = None
        self.pattern: str | None = None

        self._subscription_version = 0
        self._sent_subscription_version = -1
        self._acked_owned: frozenset[TopicPartition] | None = None
        self._in_flight: tuple[int, frozenset[TopicPartition] | None] | None = None
        self._next_heartbeat = 0.0
        self._failures = 0
        self._static_leave = False
        self._leaving_fenced = False

    # ------------------------------------------------------------ subscription

    def subscribe(
        self, topics: Iterable[str] | None = None, pattern: str | None = None, now: float = 0.0
    ) -> None:
        """Subscribe to topic names or to a regular expression (full match, Python syntax)."""
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe to either topics or a pattern")
        if topics is not None:
            names = tuple(sorted(set(topics)))
            if not all(isinstance(t, str) and t for t in names):
                raise ValueError("topic names must be non-empty strings")
            self.topics, self.pattern = names, None
        else:
            self.topics, self.pattern = None, pattern
        self._subscription_version += 1
        if self.state in (MemberState.UNSUBSCRIBED, MemberState.LEFT):
            self.state = MemberState.JOINING
            self.member_epoch = JOIN_EPOCH
        self._next_heartbeat = now

    @property
    def is_member(self) -> bool:
        """Joined with a positive epoch (commits are accepted)."""
        return self.member_epoch > 0 and self.state in (
            MemberState.STABLE,
            MemberState.RECONCILING,
            MemberState.LEAVING,
        )

    # ------------------------------------------------------------ heartbeats

    def heartbeat_due(self, now: float) -> bool:
        return self.time_until_heartbeat(now) == 0.0

    def time_until_heartbeat(self, now: float) -> float:
        """Seconds until the next heartbeat should go out (inf: none is due)."""
        if self._in_flight is not None:
            return math.inf
        if self.state not in (MemberState.JOINING, MemberState.STABLE, MemberState.RECONCILING):
            return math.inf
        return max(0.0, self._next_heartbeat - now)

    def build_heartbeat(self) -> dict[str, Any]:
        """The next heartbeat request (call when due); one may be in flight at a time."""
        if self.state not in (MemberState.JOINING, MemberState.STABLE, MemberState.RECONCILING):
            raise RuntimeError(f"no heartbeat to send in state {self.state.value}")
        joining = self.member_epoch == JOIN_EPOCH
        full = joining or self._acked_owned is None
        payload: dict[str, Any] = {
            "group_id": self.group_id,
            "member_id": self.member_id,
            "member_epoch": self.member_epoch,
            "instance_id": self.instance_id,
            "rack_id": self.rack_id,
            "client_id": self.client_id,
            "rebalance_timeout_ms": self.rebalance_timeout_ms if full else -1,
            "server_assignor": self.server_assignor,
            "subscribed_topic_names": None,
            "subscribed_topic_regex": None,
            "topic_partitions": None,
        }
        if full or self._sent_subscription_version != self._subscription_version:
            if self.pattern is not None:
                payload["subscribed_topic_names"] = []
                payload["subscribed_topic_regex"] = self.pattern
            else:
                payload["subscribed_topic_names"] = list(self.topics or ())
                payload["subscribed_topic_regex"] = ""
        owned: frozenset[TopicPartition] | None = None
        if full or self.owned != self._acked_owned:
            owned = frozenset() if joining else self.owned
            payload["topic_partitions"] = _tps_payload(owned)
        self._in_flight = (self._subscription_version, owned)
        return payload

    def on_heartbeat_response(self, payload: Any, now: float) -> ErrorAction | None:
        """Digest a heartbeat answer; an ErrorAction if it carried an error."""
        error = response_error(payload)
        if error is not None:
            return self.on_heartbeat_error(error, now)
        sent = self._in_flight
        self._in_flight = None
        self._failures = 0
        if self.state is MemberState.LEAVING and not self.member_id:
            # It left while its join was in flight: learn who it became, to say goodbye.
            self.member_id = payload["member_id"]
            self.member_epoch = payload["member_epoch"]
            return None
        if self.state not in (MemberState.JOINING, MemberState.STABLE, MemberState.RECONCILING):
            return None  # fenced or leaving meanwhile: this answer no longer matters
        self.member_id = payload["member_id"]
        self.member_epoch = payload["member_epoch"]
        self.heartbeat_interval = payload["heartbeat_interval_ms"] / 1000.0
        if sent is not None:
            version, owned = sent
            self._sent_subscription_version = max(self._sent_subscription_version, version)
            if owned is not None:
                self._acked_owned = owned
        assignment = payload.get("assignment")
        if assignment is not None:
            self.target = _tps_from(assignment.get("topic_partitions"))
        self._settle_state()
        prompt = self.owned != self._acked_owned or (
            self._sent_subscription_version != self._subscription_version
        )
        self._next_heartbeat = now if prompt else now + self.heartbeat_interval
        return None

    def on_heartbeat_error(self, error: ServerError, now: float) -> ErrorAction:
        """A heartbeat answered with an error: what to do about it."""
        self._in_flight = None
        self._acked_owned = None  # the next heartbeat repeats everything
        if isinstance(error, _FENCED):
            log.info("group %s: member %s fenced (%s)", self.group_id, self.member_id, error)
            if isinstance(error, UnknownMemberIdError) and self.instance_id is None:
                self.member_id = ""
            self._fence(now)
            return ErrorAction.REJOIN
        if isinstance(error, _REDISCOVER):
            self._backoff(now)
            return ErrorAction.REDISCOVER
        if isinstance(error, _RETRY) or error.retriable:
            self._backoff(now)
            return ErrorAction.RETRY
        log.error("group %s: heartbeat refused for good: %s", self.group_id, error)
        self.fatal_error = error
        self.state = MemberState.FATAL
        return ErrorAction.FATAL

    def on_heartbeat_failed(self, now: float) -> ErrorAction:
        """The heartbeat got no answer (connection lost, timeout): find the coordinator again."""
        self._in_flight = None
        self._acked_owned = None
        self._backoff(now)
        return ErrorAction.REDISCOVER

    def _backoff(self, now: float) -> None:
        self._failures += 1
        delay = min(self.retry_backoff_max, self.retry_backoff * 2 ** (self._failures - 1))
        self._next_heartbeat = now + delay

    def _fence(self, now: float) -> None:
        self.member_epoch = JOIN_EPOCH
        self.target = frozenset()
        self.state = MemberState.FENCED
        if not self.owned:
            self._rejoin(now)

    def _rejoin(self, now: float) -> None:
        self.state = MemberState.JOINING
        self.member_epoch = JOIN_EPOCH
        self._acked_owned = None
        self._next_heartbeat = now

    def _settle_state(self) -> None:
        if self.state in (MemberState.JOINING, MemberState.STABLE, MemberState.RECONCILING):
            self.state = (
                MemberState.STABLE if self.owned == self.target else MemberState.RECONCILING
            )

    # ------------------------------------------------------------ reconciliation

    def next_action(self) -> RebalanceAction | None:
        """What to do next with the partitions (None: nothing for now)."""
        if self.state is MemberState.FENCED:
            return Lose(self.owned) if self.owned else None
        if self.state is MemberState.LEAVING:
            if not self.owned:
                return None
            return Lose(self.owned) if self._leaving_fenced else Revoke(self.owned)
        if self.state not in (MemberState.STABLE, MemberState.RECONCILING):
            return None
        revoke = self.owned - self.target
        if revoke:
            return Revoke(revoke)
        assign = self.target - self.owned
        if assign:
            return Assign(assign)
        return None

    def action_done(self, action: RebalanceAction, now: float) -> None:
        """The callbacks of ``action`` ran: the owned partitions change accordingly.

        Partitions whose assign callback ran are owned until a revoke or lose callback
        ran for them, even if the target moved (or the member was fenced or started
        leaving) meanwhile: the next action then takes them away again, so the owner's
        view (what it consumes) and ``owned`` never differ."""
        if isinstance(action, Assign):
            if self.state is not MemberState.LEFT:
                self.owned = self.owned | action.partitions
        else:
            self.owned = self.owned - action.partitions
        if self.state is MemberState.FENCED and not self.owned:
            self._rejoin(now)
            return
        self._settle_state()
        if self.owned != self._acked_owned:
            self._next_heartbeat = now  # tell the coordinator at once

    # ------------------------------------------------------------ leaving

    def leave(self, *, static: bool | None = None) -> None:
        """Start leaving: revoke what is owned, then send the leave heartbeat.

        ``static`` (default: whether an instance id is set) leaves temporarily as a
        static member (epoch -2): the coordinator keeps the assignment for the session
        timeout, so a restarted instance gets it back without a rebalance."""
        if self.state in (MemberState.LEFT, MemberState.FATAL, MemberState.UNSUBSCRIBED):
            self.state = MemberState.LEFT
            return
        self._static_leave = self.instance_id is not None if static is None else static
        if self._static_leave and self.instance_id is None:
            raise ValueError("only a member with an instance id can leave statically")
        if self.member_epoch == JOIN_EPOCH and not self.member_id and self._in_flight is None:
            self.state = MemberState.LEFT
            self.owned = frozenset()
            return
        # A fenced member's partitions are lost, not revoked: no commits for them.
        self._leaving_fenced = self.state is MemberState.FENCED
        self.state = MemberState.LEAVING

    @property
    def ready_to_leave(self) -> bool:
        """Leaving, with every partition given up and no heartbeat awaiting its answer."""
        return self.state is MemberState.LEAVING and not self.owned and self._in_flight is None

    def build_leave(self) -> dict[str, Any] | None:
        """The leave heartbeat (None if the coordinator never knew this member)."""
        if not self.member_id:
            return None
        return {
            "group_id": self.group_id,
            "member_id": self.member_id,
            "member_epoch": STATIC_LEAVE_EPOCH if self._static_leave else LEAVE_EPOCH,
            "instance_id": self.instance_id,
            "subscribed_topic_names": None,
            "subscribed_topic_regex": None,
            "topic_partitions": None,
        }

    def left(self) -> None:
        self.state = MemberState.LEFT
        self.member_epoch = JOIN_EPOCH
        self.target = frozenset()
        self.owned = frozenset()
        self._acked_owned = None
        if not self._static_leave:
            self.member_id = ""

    # ------------------------------------------------------------ commits

    def commit_request(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> dict[str, Any]:
        """OFFSET_COMMIT with this member's id and current epoch."""
        if not self.is_member:
            raise CommitFailedError(
                f"group {self.group_id}: not a member right now ({self.state.value}); "
                "the partitions may be rebalancing",
                {},
            )
        return commit_request(self.group_id, offsets, self.member_id, self.member_epoch)


def commit_request(
    group_id: str,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    member_id: str = "",
    member_epoch: int = -1,
) -> dict[str, Any]:
    """An OFFSET_COMMIT payload (member id "" commits without membership)."""
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for tp, om in sorted(offsets.items()):
        by_topic.setdefault(tp.topic, []).append(
            {
                "partition": tp.partition,
                "offset": om.offset,
                "leader_epoch": om.leader_epoch,
                "metadata": om.metadata,
            }
        )
    return {
        "group_id": group_id,
        "member_id": member_id,
        "member_epoch": member_epoch,
        "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
    }


def commit_errors(response: Any) -> dict[TopicPartition, ServerError]:
    """Per-partition errors of an OFFSET_COMMIT response."""
    out: dict[TopicPartition, ServerError] = {}
    for topic in response.get("topics", []):
        for part in topic.get("partitions", []):
            error = response_error(part)
            if error is not None:
                out[TopicPartition(topic["topic"], part["partition"])] = error
    return out


# ---------------------------------------------------------------- transport


class GroupTransport(Protocol):
    """How the driver reaches brokers: one request each, response payload or an exception."""

    async def call_any(self, api: int, payload: dict[str, Any]) -> Any: ...

    async def call_node(self, node: CoordinatorNode, api: int, payload: dict[str, Any]) -> Any: ...


class ChannelTransport:
    """A GroupTransport over its own RpcChannel connections (one per broker address).

    Use as ``async with ChannelTransport(["host:port", ...]) as transport``."""

    def __init__(self, bootstrap: Iterable[str], *, connect_timeout: float = 10.0) -> None:
        self.bootstrap = list(bootstrap)
        if not self.bootstrap:
            raise ValueError("at least one bootstrap address is needed")
        self.connect_timeout = connect_timeout
        self._channels: dict[str, RpcChannel] = {}
        self._nursery: trio.Nursery | None = None
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> ChannelTransport:
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._stack.push_async_callback(self._close)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _close(self) -> None:
        for channel in list(self._channels.values()):
            with trio.CancelScope(shield=True):
                await channel.aclose()
        self._channels.clear()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _channel(self, address: str) -> RpcChannel:
        channel = self._channels.get(address)
        if channel is not None and channel.is_open:
            return channel
        if self._nursery is None:
            raise RuntimeError("use ChannelTransport as an async context manager")
        host, _, port = address.rpartition(":")
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, int(port))
        except (OSError, trio.TooSlowError) as exc:
            raise ConnectionLostError(f"cannot connect to {address}: {exc!r}") from exc
        channel = RpcChannel(stream, ERRORS)
        self._channels[address] = channel
        self._nursery.start_soon(self._run, address, channel)
        return channel

    async def _run(self, address: str, channel: RpcChannel) -> None:
        try:
            await channel.run()
        finally:
            if self._channels.get(address) is channel:
                del self._channels[address]

    async def call_any(self, api: int, payload: dict[str, Any]) -> Any:
        last: RivuletError | None = None
        for address in self.bootstrap:
            try:
                channel = await self._channel(address)
                return await channel.call(api, 0, payload)
            except ConnectionLostError as exc:
                last = exc
        raise ConnectionLostError(f"no broker reachable: {last}")

    async def call_node(self, node: CoordinatorNode, api: int, payload: dict[str, Any]) -> Any:
        channel = await self._channel(node.address)
        return await channel.call(api, 0, payload)


class ClusterTransport:
    """A GroupTransport over a client's ``client.cluster.Cluster`` (its connections are
    shared with fetches and admin calls). A coordinator the cluster metadata does not
    list yet is looked up with a metadata refresh; an unreachable cluster raises
    ConnectionLostError, which the driver retries."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def call_any(self, api: int, payload: dict[str, Any]) -> Any:
        try:
            return await self.cluster.call_any(api, payload)
        except NoBrokersAvailableError as exc:
            raise ConnectionLostError(str(exc)) from exc

    async def call_node(self, node: CoordinatorNode, api: int, payload: dict[str, Any]) -> Any:
        try:
            if node.node_id not in self.cluster.metadata.brokers:
                await self.cluster.refresh()
            return await self.cluster.call(node.node_id, api, payload)
        except NoBrokersAvailableError as exc:
            raise ConnectionLostError(str(exc)) from exc


class CoordinatorLink:
    """Finds the group's coordinator and sends it requests (one attempt each)."""

    def __init__(
        self,
        transport: GroupTransport,
        group_id: str,
        *,
        request_timeout: float = 30.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
    ) -> None:
        self.transport = transport
        self.group_id = group_id
        self.request_timeout = request_timeout
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.coordinator: CoordinatorNode | None = None

    def reset(self) -> None:
        self.coordinator = None

    async def find(self, *, retry: bool = True) -> CoordinatorNode:
        """The coordinator, asking brokers until one answers (retriable errors retried;
        bound it with a cancel scope). With ``retry`` False, one attempt: a failure
        raises CoordinatorNotAvailableError."""
        if self.coordinator is not None:
            return self.coordinator
        failures = 0
        while True:
            try:
                with trio.fail_after(self.request_timeout):
                    response = await self.transport.call_any(
                        ApiKey.FIND_COORDINATOR, {"key": self.group_id, "key_type": 0}
                    )
                error = response_error(response)
                if error is None:
                    node = CoordinatorNode(response["node_id"], response["host"], response["port"])
                    self.coordinator = node
                    return node
                if not error.retriable:
                    raise error
                log.debug("group %s: coordinator not known yet: %s", self.group_id, error)
            except (ConnectionLostError, ResponseTimeoutError, trio.TooSlowError) as exc:
                log.debug("group %s: finding the coordinator: %r", self.group_id, exc)
            except ServerError as exc:
                if not exc.retriable:
                    raise
            if not retry:
                raise CoordinatorNotAvailableError(
                    f"the coordinator of group {self.group_id} is not known yet"
                )
            failures += 1
            await trio.sleep(min(self.retry_backoff_max, self.retry_backoff * 2 ** (failures - 1)))

    async def call(self, api: int, payload: dict[str, Any], *, patient: bool = True) -> Any:
        """One request to the coordinator. Transport failures and timeouts forget the
        coordinator and raise ConnectionLostError; error responses raise as usual.
        ``patient`` False tries to find an unknown coordinator only once."""
        node = await self.find(retry=patient)
        try:
            with trio.fail_after(self.request_timeout):
                return await self.transport.call_node(node, api, payload)
        except trio.TooSlowError:
            self.reset()
            raise ConnectionLostError(
                f"coordinator {node.address} did not answer in {self.request_timeout}s"
            ) from None
        except (ConnectionLostError, ResponseTimeoutError) as exc:
            self.reset()
            raise ConnectionLostError(f"coordinator {node.address}: {exc}") from exc
        except _REDISCOVER:
            self.reset()
            raise


# ---------------------------------------------------------------- the async driver


class RebalanceListener:
    """Callbacks around assignment changes; override any. Each may be a plain method or
    a coroutine. ``on_partitions_lost`` defaults to ``on_partitions_revoked``."""

    def on_partitions_revoked(self, partitions: set[TopicPartition]) -> Awaitable[None] | None:
        return None

    def on_partitions_assigned(self, partitions: set[TopicPartition]) -> Awaitable[None] | None:
        return None

    def on_partitions_lost(self, partitions: set[TopicPartition]) -> Awaitable[None] | None:
        return self.on_partitions_revoked(partitions)


class GroupMember:
    """Keeps one member in its group: heartbeats, reconciliation through the listener,
    commits. Run ``run()`` in a nursery; ``leave()`` ends it."""

    def __init__(
        self,
        transport: GroupTransport,
        group_id: str,
        *,
        topics: Iterable[str] | None = None,
        pattern: str | None = None,
        listener: RebalanceListener | None = None,
        instance_id: str | None = None,
        rack_id: str | None = None,
        server_assignor: str | None = None,
        rebalance_timeout_ms: int = DEFAULT_REBALANCE_TIMEOUT_MS,
        client_id: str = "",
        request_timeout: float = 30.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 1.0,
    ) -> None:
        self.membership = Membership(
            group_id,
            instance_id=instance_id,
            rack_id=rack_id,
            server_assignor=server_assignor,
            rebalance_timeout_ms=rebalance_timeout_ms,
            client_id=client_id,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self.link = CoordinatorLink(
            transport,
            group_id,
            request_timeout=request_timeout,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self.listener = listener or RebalanceListener()
        self.request_timeout = request_timeout
        if topics is not None or pattern is not None:
            self.membership.subscribe(topics, pattern, trio.current_time() if _in_trio() else 0.0)
        self._wake_heartbeat = trio.Event()
        self._changed = trio.Event()
        self._stopped = trio.Event()
        self._running = False
        #: The last exception a rebalance callback raised (they never stop the member).
        self.callback_error: BaseException | None = None

    # ------------------------------------------------------------ state

    @property
    def group_id(self) -> str:
        return self.membership.group_id

    @property
    def member_id(self) -> str:
        return self.membership.member_id

    @property
    def member_epoch(self) -> int:
        return self.membership.member_epoch

    @property
    def state(self) -> MemberState:
        return self.membership.state

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now (their assign callbacks ran)."""
        return self.membership.owned

    def subscribe(self, topics: Iterable[str] | None = None, pattern: str | None = None) -> None:
        self.membership.subscribe(topics, pattern, trio.current_time())
        self._notify()

    async def wait_for(
        self, predicate: Callable[[GroupMember], bool], timeout: float | None = None
    ) -> None:
        """Wait until ``predicate(self)`` holds (raises trio.TooSlowError after ``timeout``)."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            while not predicate(self):
                if self.membership.state is MemberState.FATAL:
                    raise self._fatal()
                await self._changed.wait()

    async def wait_stable(self, timeout: float | None = None) -> None:
        """Wait until the member owns exactly what the coordinator assigned it."""
        await self.wait_for(lambda m: m.state is MemberState.STABLE, timeout)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self._wake_heartbeat.set()

    def _fatal(self) -> GroupMembershipError:
        cause = self.membership.fatal_error
        return GroupMembershipError(f"group {self.group_id}: {cause}", cause)

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat and reconcile until ``leave()`` completes; raises GroupMembershipError
        if the coordinator refuses the membership for good."""
        if self._running:
            raise RuntimeError("this member already runs")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reconcile_loop)
                task_status.started()
                await self._heartbeat_loop()
                nursery.cancel_scope.cancel()
        finally:
            self._running = False
            self._stopped.set()
            self._notify()
        if self.membership.state is MemberState.FATAL:
            raise self._fatal()

    @property
    def running(self) -> bool:
        """Whether ``run()`` is running."""
        return self._running

    def begin_leave(self, *, static: bool | None = None) -> None:
        """Start leaving (as ``leave``) without waiting for it to complete."""
        self.membership.leave(static=static)
        self._notify()

    async def leave(self, *, static: bool | None = None, timeout: float | None = None) -> None:
        """Revoke the owned partitions (callbacks run), tell the coordinator, stop ``run()``."""
        self.begin_leave(static=static)
        if self._running:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await self._stopped.wait()

    async def _heartbeat_loop(self) -> None:
        m = self.membership
        while True:
            if m.state in (MemberState.LEFT, MemberState.FATAL):
                return
            if m.ready_to_leave:
                await self._send_leave()
                return
            now = trio.current_time()
            wait = m.time_until_heartbeat(now)
            if wait > 0:
                self._wake_heartbeat = trio.Event()
                with trio.move_on_after(wait):
                    await self._wake_heartbeat.wait()
                continue
            await self._heartbeat_once()
            self._notify()

    async def _heartbeat_once(self) -> None:
        m = self.membership
        payload = m.build_heartbeat()
        action: ErrorAction | None
        try:
            response = await self.link.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, payload, patient=False)
        except ServerError as exc:
            action = m.on_heartbeat_error(exc, trio.current_time())
        except (ConnectionLostError, ResponseTimeoutError) as exc:
            log.info("group %s: heartbeat failed: %s", self.group_id, exc)
            action = m.on_heartbeat_failed(trio.current_time())
        else:
            action = m.on_heartbeat_response(response, trio.current_time())
        if action is ErrorAction.REDISCOVER:
            self.link.reset()

    async def _send_leave(self) -> None:
        m = self.membership
        payload = m.build_leave()
        if payload is not None:
            try:
                response = await self.link.call(
                    ApiKey.CONSUMER_GROUP_HEARTBEAT, payload, patient=False
                )
                error = response_error(response)
                if error is not None:
                    log.info("group %s: leave answered %s", self.group_id, error)
            except (ServerError, ConnectionLostError, ResponseTimeoutError) as exc:
                log.info(
                    "group %s: leaving failed (the session will expire): %s", self.group_id, exc
                )
        m.left()

    async def _reconcile_loop(self) -> None:
        m = self.membership
        while True:
            action = m.next_action()
            if action is None:
                changed = self._changed
                await changed.wait()
                continue
            await self._run_callback(action)
            m.action_done(action, trio.current_time())
            self._notify()

    async def _run_callback(self, action: RebalanceAction) -> None:
        partitions = set(action.partitions)
        listener = self.listener
        if isinstance(action, Revoke):
            callback = listener.on_partitions_revoked
        elif isinstance(action, Assign):
            callback = listener.on_partitions_assigned
        else:
            callback = listener.on_partitions_lost
        try:
            result = callback(partitions)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            # A failing callback must not wedge the group: the change goes ahead.
            log.exception("group %s: %s callback failed", self.group_id, type(action).__name__)
            self.callback_error = exc

    # ------------------------------------------------------------ offsets

    async def commit(
        self,
        offsets: Mapping[TopicPartition, OffsetAndMetadata | int],
        timeout: float | None = None,
    ) -> None:
        """Commit with the current member epoch; retried after the next heartbeat when the
        epoch moved (STALE_MEMBER_EPOCH) and when the coordinator moves. Raises
        CommitFailedError (e.g. the member was fenced) or trio.TooSlowError."""
        wanted = {
            tp: om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(om)
            for tp, om in offsets.items()
        }
        if not wanted:
            return
        failures = 0
        with trio.fail_after(self.request_timeout if timeout is None else timeout):
            while True:
                epoch = self.membership.member_epoch
                payload = self.membership.commit_request(wanted)
                try:
                    response = await self.link.call(ApiKey.OFFSET_COMMIT, payload)
                    errors = commit_errors(response)
                except (ConnectionLostError, ResponseTimeoutError, *_REDISCOVER) as exc:
                    errors = {tp: _as_server_error(exc) for tp in wanted}
                if not errors:
                    return
                first = next(iter(errors.values()))
                if isinstance(first, StaleMemberEpochError):
                    await self._wait_epoch_change(epoch)
                    continue
                if all(
                    isinstance(e, (*_REDISCOVER, *_RETRY)) or e.retriable for e in errors.values()
                ):
                    if any(isinstance(e, _REDISCOVER) for e in errors.values()):
                        self.link.reset()
                    failures += 1
                    await trio.sleep(
                        min(
                            self.link.retry_backoff_max,
                            self.link.retry_backoff * 2 ** (failures - 1),
                        )
                    )
                    continue
                raise CommitFailedError(f"group {self.group_id}: commit refused: {first}", errors)

    async def _wait_epoch_change(self, epoch: int) -> None:
        await self.wait_for(lambda m: m.member_epoch != epoch or not m.membership.is_member)

    async def committed(
        self, partitions: Iterable[TopicPartition] | None = None, timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets (of ``partitions``, or all), None where none is."""
        return await fetch_committed(
            self.link, partitions, timeout=self.request_timeout if timeout is None else timeout
        )


def _as_server_error(exc: BaseException) -> ServerError:
    if isinstance(exc, ServerError):
        return exc
    return CoordinatorNotAvailableError(str(exc))


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def fetch_committed(
    link: CoordinatorLink,
    partitions: Iterable[TopicPartition] | None = None,
    *,
    timeout: float = 30.0,
) -> dict[TopicPartition, OffsetAndMetadata | None]:
    """OFFSET_FETCH through ``link`` without membership, retrying coordinator errors."""
    wanted = None if partitions is None else sorted(set(partitions))
    topics = None
    if wanted is not None:
        by_topic: dict[str, list[int]] = {}
        for tp in wanted:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        topics = [{"topic": t, "partitions": ps} for t, ps in by_topic.items()]
    payload = {"group_id": link.group_id, "topics": topics, "member_id": "", "member_epoch": -1}
    failures = 0
    with trio.fail_after(timeout):
        while True:
            try:
                response = await link.call(ApiKey.OFFSET_FETCH, payload)
                error = response_error(response)
                if error is not None:
                    raise error
            except (ConnectionLostError, ResponseTimeoutError, *_REDISCOVER, *_RETRY) as exc:
                if isinstance(exc, _REDISCOVER):
                    link.reset()
                failures += 1
                log.debug("group %s: offset fetch: %s", link.group_id, exc)
                await trio.sleep(
                    min(link.retry_backoff_max, link.retry_backoff * 2 ** (failures - 1))
                )
                continue
            out: dict[TopicPartition, OffsetAndMetadata | None] = {}
            for topic in response["topics"]:
                for part in topic["partitions"]:
                    tp = TopicPartition(topic["topic"], part["partition"])
                    offset = part["offset"]
                    out[tp] = (
                        None
                        if offset < 0
                        else OffsetAndMetadata(offset, part["metadata"], part["leader_epoch"])
                    )
            return out


async def commit_offsets(
    link: CoordinatorLink,
    offsets: Mapping[TopicPartition, OffsetAndMetadata | int],
    *,
    timeout: float = 30.0,
) -> None:
    """OFFSET_COMMIT without membership (member id ""): for consumers with manual
    assignment and admin offset resets; the group must have no members. Raises
    CommitFailedError."""
    wanted = {
        tp: om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(om)
        for tp, om in offsets.items()
    }
    payload = commit_request(link.group_id, wanted)
    failures = 0
    with trio.fail_after(timeout):
        while True:
            try:
                errors = commit_errors(await link.call(ApiKey.OFFSET_COMMIT, payload))
            except (ConnectionLostError, ResponseTimeoutError, *_REDISCOVER) as exc:
                errors = {tp: _as_server_error(exc) for tp in wanted}
            if not errors:
                return
            if not all(
                isinstance(e, (*_REDISCOVER, *_RETRY)) or e.retriable for e in errors.values()
            ):
                first = next(iter(errors.values()))
                raise CommitFailedError(f"group {link.group_id}: commit refused: {first}", errors)
            link.reset()
            failures += 1
            await trio.sleep(min(link.retry_backoff_max, link.retry_backoff * 2 ** (failures - 1)))
