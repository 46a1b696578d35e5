"""The coordinator's deterministic state machine: znode tree + committed sessions.

A change happens in two steps, as in ZooKeeper's PrepRequestProcessor and
FinalRequestProcessor:

* ``prepare_*(..., now_ms)`` validates a request against the current state and
  returns a :class:`Txn` (zxid, wall time, primitive ops): a msgpack-able value
  that is logged before the change is acknowledged. Prepare raises the
  coordinator's errors and changes nothing.
* :meth:`StateMachine.apply` applies a Txn and returns per-op results plus the
  changes watchers must hear about. It never fails for a txn prepared against the
  same state, so replaying the log after a snapshot rebuilds an identical machine
  (ctime/mtime come from the txn, never from a clock).

Primitive ops (the txn log's record format, one list each):

    [OP_CREATE, path, data, mode, owner, ttl_ms, parents]   parents: missing ancestors,
                                                            created first as persistent
    [OP_DELETE, path]
    [OP_SET, path, data]
    [OP_CHECK, path]                                        no-op (a multi's check)
    [OP_SESSION_OPEN, session_id, password, timeout_ms]
    [OP_SESSION_CLOSE, session_id]                          after deletes of its ephemerals

A multi is one txn holding one op per request op, so it is all-or-nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from client.wire import ServerError
from coordinator.errors import (
    BadArgumentsError,
    BadVersionError,
    DataTooLargeError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistencyError,
    SessionExpiredError,
)
from coordinator.paths import ROOT, parent_of, validate_path
from coordinator.protocol import CreateMode, EventType
from coordinator.tree import DataTree, Node

OP_CREATE = 1
OP_DELETE = 2
OP_SET = 3
OP_CHECK = 4
OP_SESSION_OPEN = 5
OP_SESSION_CLOSE = 6

DEFAULT_MAX_DATA_BYTES = 1024 * 1024
# ZooKeeper's EphemeralType.TTL maximum (40 bits of milliseconds).
MAX_TTL_MS = (1 << 40) - 1
MAX_VERSION = (1 << 31) - 1
SNAPSHOT_FORMAT = 1

CREATED = EventType.CREATED
DELETED = EventType.DELETED
DATA_CHANGED = EventType.DATA_CHANGED
CHILDREN_CHANGED = EventType.CHILDREN_CHANGED

_MODES = {int(m): m for m in CreateMode}


class Txn(NamedTuple):
    """One logged transaction; msgpack packs it as ``[zxid, time_ms, ops]``."""

    zxid: int
    time_ms: int
    ops: list[list[Any]]

    @classmethod
    def from_wire(cls, value: Any) -> Txn:
        if not isinstance(value, list | tuple) or len(value) != 3:
            raise ValueError(f"a txn is [zxid, time_ms, ops], got {value!r}")
        zxid, time_ms, ops = value
        if type(zxid) is not int or type(time_ms) is not int or not isinstance(ops, list):
            raise ValueError(f"malformed txn header: {value!r}")
        return cls(zxid, time_ms, ops)


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class CreateOp:
    path: str
    data: bytes = b""
    mode: int = 0
    ttl_ms: int = 0
    make_parents: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str
    version: int = -1


@dataclass(frozen=True, slots=True)
class SetOp:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True, slots=True)
class CheckOp:
    path: str
    version: int = -1


Op = CreateOp | DeleteOp | SetOp | CheckOp


class MultiFailure(Exception):
    """A multi op failed in prepare: ``index`` is the op, ``error`` its error."""

    def __init__(self, index: int, error: ServerError) -> None:
        super().__init__(f"multi op {index} failed: {error}")
        self.index = index
        self.error = error

    def results(self, count: int) -> list[list[Any]]:
        """Per-op ``[code, message]`` as protocol.py specifies for a failed multi."""
        out: list[list[Any]] = []
        for i in range(count):
            if i < self.index:
                out.append([RolledBackError.code, RolledBackError.name])
            elif i == self.index:
                out.append([self.error.code, self.error.message])
            else:
                out.append([RuntimeInconsistencyError.code, RuntimeInconsistencyError.name])
        return out


@dataclass(slots=True)
class SessionRecord:
    """A committed session: what survives a restart."""

    password: bytes
    timeout_ms: int


@dataclass(slots=True)
class Applied:
    """What :meth:`StateMachine.apply` produced: per-op results and watch changes."""

    results: list[dict[str, Any]]
    changes: list[tuple[str, str]] = field(default_factory=list)


# ------------------------------------------------------------------ prepare view


class _Info:
    """The part of a node prepare looks at, copied so a multi can change it."""

    __slots__ = ("cversion", "num_children", "owner", "version")

    def __init__(self, version: int, cversion: int, num_children: int, owner: int) -> None:
        self.version = version
        self.cversion = cversion
        self.num_children = num_children
        self.owner = owner


class _View:
    """The tree as seen by the ops of one request: the tree plus earlier ops' effects."""

    __slots__ = ("changed", "nodes")

    def __init__(self, tree: DataTree) -> None:
        self.nodes = tree.nodes
        self.changed: dict[str, _Info | None] = {}

    def get(self, path: str) -> _Info | None:
        changed = self.changed
        if path in changed:
            return changed[path]
        node = self.nodes.get(path)
        if node is None:
            return None
        info = _Info(node.version, node.cversion, len(node.children), node.owner)
        changed[path] = info
        return info


def _check_version(path: str, expected: int, actual: int) -> None:
    if expected != -1 and expected != actual:
        raise BadVersionError(f"{path}: expected version {expected}, node has {actual}")


def _check_version_arg(version: int) -> None:
    if not -1 <= version <= MAX_VERSION:
        raise BadArgumentsError(f"version must be -1 or 0..{MAX_VERSION}, got {version}")


# ----------------------------------------------------------------- the machine


class StateMachine:
    """Tree + sessions + zxid counter; see the module docstring."""

    def __init__(self, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> None:
        self.tree = DataTree()
        self.sessions: dict[int, SessionRecord] = {}
        self.last_zxid = 0
        self.last_session_id = 0
        self.max_data_bytes = max_data_bytes

    # ------------------------------------------------------------ prepare: data

    def prepare(self, session_id: int, op: Op, now_ms: int) -> Txn:
        """A single CREATE / DELETE / SET_DATA request (a check alone is allowed too)."""
        view = _View(self.tree)
        return Txn(self.last_zxid + 1, now_ms, [self._prepare_op(view, session_id, op)])

    def prepare_multi(self, session_id: int, ops: list[Op], now_ms: int) -> Txn:
        """A MULTI: each op sees the effect of the ones before it; raises MultiFailure."""
        view = _View(self.tree)
        out: list[list[Any]] = []
        for index, op in enumerate(ops):
            try:
                out.append(self._prepare_op(view, session_id, op))
            except ServerError as exc:
                raise MultiFailure(index, exc) from None
        return Txn(self.last_zxid + 1, now_ms, out)

    def _prepare_op(self, view: _View, session_id: int, op: Op) -> list[Any]:
        if isinstance(op, CreateOp):
            return self._prepare_create(view, session_id, op)
        if isinstance(op, SetOp):
            return self._prepare_set(view, op)
        if isinstance(op, DeleteOp):
            return self._prepare_delete(view, op)
        if isinstance(op, CheckOp):
            validate_path(op.path)
            _check_version_arg(op.version)
            info = view.get(op.path)
            if info is None:
                raise NoNodeError(op.path)
            _check_version(op.path, op.version, info.version)
            return [OP_CHECK, op.path]
        raise BadArgumentsError(f"unknown op {op!r}")

    def _check_data(self, data: bytes) -> None:
        if len(data) > self.max_data_bytes:
            raise DataTooLargeError(
                f"data of {len(data)} bytes exceeds the limit of {self.max_data_bytes}"
            )

    def _prepare_create(self, view: _View, session_id: int, op: CreateOp) -> list[Any]:
        mode = _MODES.get(op.mode)
        if mode is None:
            raise BadArgumentsError(f"unknown create mode {op.mode}")
        path = validate_path(op.path, sequential=mode.is_sequential)
        self._check_data(op.data)
        if mode.is_ttl:
            if not 0 < op.ttl_ms <= MAX_TTL_MS:
                raise BadArgumentsError(f"ttl_ms must be in 1..{MAX_TTL_MS}, got {op.ttl_ms}")
        elif op.ttl_ms:
            raise BadArgumentsError(f"ttl_ms is only allowed with a TTL mode, not {mode.name}")
        owner = 0
        if mode.is_ephemeral:
            if session_id not in self.sessions:
                raise SessionExpiredError(f"session {session_id:#x} does not exist")
            owner = session_id
        if path == ROOT and not mode.is_sequential:
            raise NodeExistsError(ROOT)
        parent_path = parent_of(path + "0" if path.endswith("/") else path)
        parent = view.get(parent_path)
        parents: list[str] = []
        if parent is None:
            if not op.make_parents:
                raise NoNodeError(f"parent of {path} does not exist: {parent_path}")
            missing = parent_path
            while True:
                parents.append(missing)
                missing = parent_of(missing)
                ancestor = view.get(missing)
                if ancestor is not None:
                    break
            if ancestor.owner:
                raise NoChildrenForEphemeralsError(f"{missing} is ephemeral")
            parents.reverse()
            ancestor.num_children += 1
            ancestor.cversion += 1
            for made in parents:
                view.changed[made] = _Info(0, 1, 1, 0)
            # The innermost new parent gets its child (this node) counted below.
            parent = _Info(0, 0, 0, 0)
            view.changed[parents[-1]] = parent
        elif parent.owner:
            raise NoChildrenForEphemeralsError(f"{parent_path} is ephemeral")
        if mode.is_sequential:
            path = f"{path}{parent.cversion:010d}"
        if view.get(path) is not None:
            raise NodeExistsError(path)
        parent.num_children += 1
        parent.cversion += 1
        view.changed[path] = _Info(0, 0, 0, owner)
        return [OP_CREATE, path, op.data, int(mode), owner, op.ttl_ms, parents]

    def _prepare_set(self, view: _View, op: SetOp) -> list[Any]:
        validate_path(op.path)
        _check_version_arg(op.version)
        self._check_data(op.data)
        info = view.get(op.path)
        if info is None:
            raise NoNodeError(op.path)
        _check_version(op.path, op.version, info.version)
        info.version += 1
        return [OP_SET, op.path, op.data]

    def _prepare_delete(self, view: _View, op: DeleteOp) -> list[Any]:
        validate_path(op.path)
        _check_version_arg(op.version)
        if op.path == ROOT:
            raise BadArgumentsError("the root node cannot be deleted")
        info = view.get(op.path)
        if info is None:
            raise NoNodeError(op.path)
        _check_version(op.path, op.version, info.version)
        if info.num_children:
            raise NotEmptyError(f"{op.path} has {info.num_children} children")
        parent = view.get(parent_of(op.path))
        if parent is not None:
            parent.num_children -= 1
            parent.cversion += 1
        view.changed[op.path] = None
        return [OP_DELETE, op.path]

    # -------------------------------------------------------- prepare: sessions

    def prepare_create_session(self, timeout_ms: int, password: bytes, now_ms: int) -> Txn:
        """A new session; the id is time-seeded so a wiped server never reuses old ids."""
        session_id = max(self.last_session_id + 1, now_ms << 12)
        return Txn(
            self.last_zxid + 1,
            now_ms,
            [[OP_SESSION_OPEN, session_id, password, timeout_ms]],
        )

    def prepare_close_session(self, session_id: int, now_ms: int) -> Txn:
        """Close or expire a session: its ephemerals go in the same txn."""
        if session_id not in self.sessions:
            raise SessionExpiredError(f"session {session_id:#x} does not exist")
        owned = sorted(self.tree.ephemerals.get(session_id, ()))
        ops: list[list[Any]] = [[OP_DELETE, path] for path in owned]
        ops.append([OP_SESSION_CLOSE, session_id])
        return Txn(self.last_zxid + 1, now_ms, ops)

    def prepare_reap(self, now_ms: int) -> Txn | None:
        """Delete emptied containers and expired TTL nodes, or None if there are none."""
        paths = self.tree.reapable(now_ms)
        if not paths:
            return None
        return Txn(self.last_zxid + 1, now_ms, [[OP_DELETE, path] for path in paths])

    # ------------------------------------------------------------------- apply

    def apply(self, txn: Txn) -> Applied:
        """Apply a prepared (or replayed) txn; raises ValueError for one out of order."""
        zxid = txn.zxid
        if zxid <= self.last_zxid:
            raise ValueError(f"txn zxid {zxid} is not above the last zxid {self.last_zxid}")
        tree = self.tree
        now = txn.time_ms
        results: list[dict[str, Any]] = []
        changes: list[tuple[str, str]] = []
        for op in txn.ops:
            code = op[0]
            if code == OP_CREATE:
                _, path, data, mode, owner, ttl_ms, parents = op
                for made in parents:
                    tree.create(made, b"", 0, 0, 0, zxid, now)
                    changes.append((CREATED, made))
                    changes.append((CHILDREN_CHANGED, parent_of(made)))
                node = tree.create(path, data, mode, owner, ttl_ms, zxid, now)
                changes.append((CREATED, path))
                changes.append((CHILDREN_CHANGED, parent_of(path)))
                results.append({"path": path, "stat": node.stat_wire()})
            elif code == OP_SET:
                node = tree.set_data(op[1], op[2], zxid, now)
                changes.append((DATA_CHANGED, op[1]))
                results.append({"stat": node.stat_wire()})
            elif code == OP_DELETE:
                tree.delete(op[1], zxid)
                changes.append((DELETED, op[1]))
                changes.append((CHILDREN_CHANGED, parent_of(op[1])))
                results.append({})
            elif code == OP_CHECK:
                results.append({})
            elif code == OP_SESSION_OPEN:
                _, session_id, password, timeout_ms = op
                self.sessions[session_id] = SessionRecord(password, timeout_ms)
                self.last_session_id = max(self.last_session_id, session_id)
                results.append({"session_id": session_id})
            elif code == OP_SESSION_CLOSE:
                self.sessions.pop(op[1], None)
                results.append({})
            else:
                raise ValueError(f"unknown txn op {op!r}")
        self.last_zxid = zxid
        return Applied(results, changes)

    # ---------------------------------------------------------------- queries

    def node(self, path: str) -> Node:
        """The node at ``path``; raises InvalidPathError or NoNodeError."""
        validate_path(path)
        node = self.tree.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        return node

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> dict[str, Any]:
        """A msgpack-able image of the whole machine (tree, sessions, counters)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "last_zxid": self.last_zxid,
            "last_session_id": self.last_session_id,
            "sessions": [
                [sid, rec.password, rec.timeout_ms] for sid, rec in sorted(self.sessions.items())
            ],
            "nodes": self.tree.dump(),
        }

    @classmethod
    def restore(cls, image: Any, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> StateMachine:
        """Rebuild from :meth:`snapshot`; raises ValueError on a malformed image."""
        if not isinstance(image, dict) or image.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a coordinator snapshot of a known format")
        try:
            machine = cls(max_data_bytes=max_data_bytes)
            machine.last_zxid = int(image["last_zxid"])
            machine.last_session_id = int(image["last_session_id"])
            for sid, password, timeout_ms in image["sessions"]:
                machine.sessions[int(sid)] = SessionRecord(bytes(password), int(timeout_ms))
            machine.tree = DataTree.load(image["nodes"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed coordinator snapshot: {exc!r}") from None
        return machine
