"""The coordinator's wire contract: api keys, payload shapes, Stat, events.

Every request is ``[api, version, xid, payload]`` with ``payload`` a msgpack map;
every api is at version 0. A connection must start with CONNECT (SERVER_STAT
excepted); the server answers each session's requests in order.

Request payload -> response payload, per api (``stat`` is a Stat list):

CONNECT         {session_id: int (0 = new), password: bytes (b"" when new),
                 timeout_ms: int, last_zxid: int}
                -> {session_id, password, timeout_ms (clamped), last_zxid (server's)}
                A reconnect whose session expired answers SESSION_EXPIRED; a
                wrong password AUTH_FAILED; a client that has seen a zxid newer
                than the server's is refused with BAD_ARGUMENTS.
CLOSE_SESSION   {} -> {}            ephemerals deleted at once; server then closes
PING            {} -> {zxid}        heartbeat; any request also counts as one
CREATE          {path, data: bytes, mode: CreateMode, ttl_ms: int (TTL modes only),
                 make_parents: bool} -> {path (actual, with sequence), stat}
DELETE          {path, version: int (-1 = any)} -> {}
EXISTS          {path, watch: bool} -> {stat | nil}
                watch on a missing node fires on its creation
GET_DATA        {path, watch: bool} -> {data, stat}
SET_DATA        {path, data, version} -> {stat}
GET_CHILDREN    {path, watch: bool} -> {children: sorted [str], stat}
MULTI           {ops: [[op, args], ...]} with op "check" {path, version},
                "create" (as CREATE), "set" (as SET_DATA), "delete" (as DELETE)
                -> {results: [[error_code, result], ...]} (top-level code 0).
                All succeed: each result is its op's response payload and code 0.
                One fails: that op has its code, the ops before it ROLLED_BACK,
                the ops after it RUNTIME_INCONSISTENCY; nothing was applied.
SYNC            {path} -> {path, zxid}
ADD_WATCH       {path, mode: "persistent" | "persistent_recursive"} -> {}
REMOVE_WATCHES  {path, kind: "data" | "child" | "persistent" | "any"} -> {}
                NO_WATCHER when this session has no such watch
SET_WATCHES     {last_zxid, data: [path], exist: [path], child: [path],
                 persistent: [path], persistent_recursive: [path]} -> {}
                sent after a reconnect: the server re-registers them and fires
                at once those whose condition changed after last_zxid
SERVER_STAT     {} -> {version, last_zxid, node_count, ephemeral_count,
                 session_count, connection_count, watch_count, outstanding_requests,
                 latency_min_ms, latency_avg_ms, latency_max_ms, uptime_s, data_dir}
                the same figures as the metrics (coordinator.metrics)

Every successful response map also carries ``zxid``: the last zxid applied
when it was answered (ZooKeeper's ReplyHeader.zxid), so a client always knows
the newest state it has seen (for SET_WATCHES and for CONNECT's last_zxid).

Push events: ``[-1, {"type": "watch", "event": EventType, "path": str, "zxid": int}]``
and ``[-1, {"type": "session", "state": "expired" | "closed"}]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

PROTOCOL_VERSION = 0
SERVER_VERSION = "rivulet-coordinator 0.1.0"


class Api(IntEnum):
    CONNECT = 1
    CLOSE_SESSION = 2
    PING = 3
    CREATE = 10
    DELETE = 11
    EXISTS = 12
    GET_DATA = 13
    SET_DATA = 14
    GET_CHILDREN = 15
    MULTI = 16
    SYNC = 17
    ADD_WATCH = 18
    REMOVE_WATCHES = 19
    SET_WATCHES = 20
    SERVER_STAT = 30


# Highest version of each api this code speaks (all start at 0).
API_VERSIONS: dict[int, int] = {int(api): 0 for api in Api}


class CreateMode(IntEnum):
    """ZooKeeper's CreateMode numbering."""

    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    PERSISTENT_WITH_TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6

    @property
    def is_ephemeral(self) -> bool:
        return self in (CreateMode.EPHEMERAL, CreateMode.EPHEMERAL_SEQUENTIAL)

    @property
    def is_sequential(self) -> bool:
        return self in (
            CreateMode.PERSISTENT_SEQUENTIAL,
            CreateMode.EPHEMERAL_SEQUENTIAL,
            CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL,
        )

    @property
    def is_ttl(self) -> bool:
        return self in (CreateMode.PERSISTENT_WITH_TTL, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL)

    @property
    def is_container(self) -> bool:
        return self is CreateMode.CONTAINER


class EventType:
    CREATED = "created"
    DELETED = "deleted"
    DATA_CHANGED = "data_changed"
    CHILDREN_CHANGED = "children_changed"


class WatchMode:
    PERSISTENT = "persistent"
    PERSISTENT_RECURSIVE = "persistent_recursive"


@dataclass(frozen=True, slots=True)
class Stat:
    """A znode's metadata, as ZooKeeper's Stat (times in ms since the epoch)."""

    czxid: int
    mzxid: int
    pzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int

    def to_wire(self) -> list[int]:
        return [
            self.czxid,
            self.mzxid,
            self.pzxid,
            self.ctime,
            self.mtime,
            self.version,
            self.cversion,
            self.ephemeral_owner,
            self.data_length,
            self.num_children,
        ]

    @classmethod
    def from_wire(cls, value: Any) -> Stat:
        if not isinstance(value, list | tuple) or len(value) != 10:
            raise ValueError(f"a Stat is a list of 10 integers, got {value!r}")
        return cls(*(int(v) for v in value))


@dataclass(frozen=True, slots=True)
class WatchedEvent:
    """A watch notification delivered to the client."""

    type: str
    path: str
    zxid: int
