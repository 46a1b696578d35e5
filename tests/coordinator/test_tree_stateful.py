"""Stateful property test: the sans-IO state machine against a small dict model.

Random creates (every mode), sets, deletes, checks, multis, session opens and
closes, clock advances and container/TTL reaping are run against both; after
every step the tree must equal the model. At the end, replaying the logged
txns into a fresh machine, and restoring a snapshot, must both give an
identical machine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from client.wire import ServerError
from coordinator.errors import (
    BadArgumentsError,
    BadVersionError,
    DataTooLargeError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
)
from coordinator.protocol import CreateMode, EventType
from coordinator.state_machine import (
    OP_DELETE,
    CheckOp,
    CreateOp,
    DeleteOp,
    MultiFailure,
    Op,
    SetOp,
    StateMachine,
    Txn,
)

MAX_DATA = 8
NAMES = ["a", "b", "c"]


def parent_of(path: str) -> str:
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


@dataclass
class MNode:
    data: bytes = b""
    version: int = 0
    cversion: int = 0
    owner: int = 0
    mode: CreateMode = CreateMode.PERSISTENT
    ttl_ms: int = 0
    mtime: int = 0
    children: set[str] = field(default_factory=set)


class Model:
    """The obviously-correct version: a dict of paths, the rules written out plainly."""

    def __init__(self) -> None:
        self.nodes: dict[str, MNode] = {"/": MNode()}
        self.sessions: set[int] = set()

    def _add(self, path: str, node: MNode) -> None:
        parent = self.nodes[parent_of(path)]
        parent.children.add(path.rsplit("/", 1)[1])
        parent.cversion += 1
        self.nodes[path] = node

    def _remove(self, path: str) -> None:
        del self.nodes[path]
        parent = self.nodes[parent_of(path)]
        parent.children.discard(path.rsplit("/", 1)[1])
        parent.cversion += 1

    def create(self, op: CreateOp, session: int, now: int) -> str:
        mode = CreateMode(op.mode)
        if len(op.data) > MAX_DATA:
            raise DataTooLargeError()
        if mode.is_ttl and op.ttl_ms <= 0:
            raise BadArgumentsError()
        if not mode.is_ttl and op.ttl_ms:
            raise BadArgumentsError()
        if mode.is_ephemeral and session not in self.sessions:
            raise SessionExpiredError()
        parent = parent_of(op.path)
        missing: list[str] = []
        while parent not in self.nodes:
            missing.append(parent)
            parent = parent_of(parent)
        if missing and not op.make_parents:
            raise NoNodeError()
        if self.nodes[parent].owner:
            raise NoChildrenForEphemeralsError()
        for made in reversed(missing):
            self._add(made, MNode(mtime=now))
        path = op.path
        if mode.is_sequential:
            path += f"{self.nodes[parent_of(op.path)].cversion:010d}"
        if path in self.nodes:
            raise NodeExistsError()
        owner = session if mode.is_ephemeral else 0
        self._add(path, MNode(op.data, owner=owner, mode=mode, ttl_ms=op.ttl_ms, mtime=now))
        return path

    def set(self, op: SetOp, now: int) -> None:
        if len(op.data) > MAX_DATA:
            raise DataTooLargeError()
        node = self.nodes.get(op.path)
        if node is None:
            raise NoNodeError()
        if op.version not in (-1, node.version):
            raise BadVersionError()
        node.data = op.data
        node.version += 1
        node.mtime = now

    def delete(self, op: DeleteOp) -> None:
        if op.path == "/":
            raise BadArgumentsError()
        node = self.nodes.get(op.path)
        if node is None:
            raise NoNodeError()
        if op.version not in (-1, node.version):
            raise BadVersionError()
        if node.children:
            raise NotEmptyError()
        self._remove(op.path)

    def check(self, op: CheckOp) -> None:
        node = self.nodes.get(op.path)
        if node is None:
            raise NoNodeError()
        if op.version not in (-1, node.version):
            raise BadVersionError()

    def run(self, op: Op, session: int, now: int) -> None:
        if isinstance(op, CreateOp):
            self.create(op, session, now)
        elif isinstance(op, SetOp):
            self.set(op, now)
        elif isinstance(op, DeleteOp):
            self.delete(op)
        else:
            self.check(op)

    def close_session(self, session: int) -> list[str]:
        gone = sorted(p for p, n in self.nodes.items() if n.owner == session)
        for path in gone:
            self._remove(path)
        self.sessions.discard(session)
        return gone

    def reapable(self, now: int) -> list[str]:
        out = []
        for path, node in self.nodes.items():
            if node.children:
                continue
            emptied_container = node.mode is CreateMode.CONTAINER and node.cversion > 0
            expired_ttl = node.mode.is_ttl and now - node.mtime > node.ttl_ms
            if emptied_container or expired_ttl:
                out.append(path)
        return sorted(out)


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
modes = st.sampled_from(list(CreateMode))
# Mostly data that fits, now and then too large (DATA_TOO_LARGE).
datas = st.integers(0, 9).flatmap(
    lambda k: st.just(b"x" * (MAX_DATA + 1)) if k == 0 else st.binary(max_size=4)
)
versions = st.sampled_from([-1, -1, -1, 0, 0, 1, 2])


def child_paths(existing: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(existing, st.sampled_from(NAMES)).map(
        lambda pair: pair[0].rstrip("/") + "/" + pair[1]
    )


@st.composite
def create_ops(draw: st.DrawFn, existing: st.SearchStrategy[str]) -> CreateOp:
    mode = draw(modes)
    # Mostly valid TTLs, sometimes a missing or a stray one (BAD_ARGUMENTS).
    ttl = draw(st.sampled_from([0, 50, 50, 500, 500, 500] if mode.is_ttl else [0] * 5 + [100]))
    path = draw(st.one_of(paths, child_paths(existing), child_paths(existing)))
    return CreateOp(path, draw(datas), int(mode), ttl, draw(st.booleans()))


def ops_for(existing: st.SearchStrategy[str]) -> st.SearchStrategy[Op]:
    target = st.one_of(existing, existing, paths)
    return st.one_of(
        create_ops(existing),
        create_ops(existing),
        st.builds(SetOp, target, datas, versions),
        st.builds(DeleteOp, target, versions),
        st.builds(CheckOp, target, versions),
    )


def roundtrip(txn: Txn) -> Txn:
    """The txn as it comes back from the log: msgpack'd and parsed."""
    packed = msgpack.packb(txn, use_bin_type=True)
    return Txn.from_wire(msgpack.unpackb(packed, raw=False, strict_map_key=False))


class TreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = StateMachine(max_data_bytes=MAX_DATA)
        self.model = Model()
        self.log: list[Txn] = []
        self.now = 1_000
        self.dead_sessions: list[int] = []

    def commit(self, txn: Txn) -> Any:
        assert txn.zxid == self.machine.last_zxid + 1
        self.log.append(txn)
        applied = self.machine.apply(roundtrip(txn))
        for event, path in applied.changes:
            assert event in (
                EventType.CREATED,
                EventType.DELETED,
                EventType.DATA_CHANGED,
                EventType.CHILDREN_CHANGED,
            )
            assert path.startswith("/")
        return applied

    def existing(self) -> st.SearchStrategy[str]:
        return st.sampled_from(sorted(self.model.nodes))

    def session(self, data: st.DataObject) -> int:
        live = sorted(self.model.sessions)
        return data.draw(st.sampled_from(live + self.dead_sessions + [0]))

    @initialize()
    def first_session(self) -> None:
        self.open_session()

    @precondition(lambda self: len(self.model.sessions) < 3)
    @rule()
    def open_session(self) -> None:
        txn = self.machine.prepare_create_session(5000, b"pw", self.now)
        sid = self.commit(txn).results[0]["session_id"]
        assert sid not in self.model.sessions and sid not in self.dead_sessions
        self.model.sessions.add(sid)

    @precondition(lambda self: bool(self.model.sessions))
    @rule(data=st.data())
    def close_session(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.model.sessions)))
        txn = self.machine.prepare_close_session(sid, self.now)
        deleted = [op[1] for op in txn.ops if op[0] == OP_DELETE]
        assert deleted == self.model.close_session(sid)
        self.commit(txn)
        self.dead_sessions.append(sid)

    @rule(data=st.data())
    def another_single_op(self, data: st.DataObject) -> None:
        self.single_op(data)

    @rule(data=st.data())
    def single_op(self, data: st.DataObject) -> None:
        op = data.draw(ops_for(self.existing()))
        sid = self.session(data)
        expected: type[ServerError] | None = None
        shadow = copy.deepcopy(self.model)
        try:
            shadow.run(op, sid, self.now)
        except ServerError as exc:
            expected = type(exc)
        try:
            txn = self.machine.prepare(sid, op, self.now)
        except ServerError as exc:
            assert type(exc) is expected, (op, exc)
            return
        assert expected is None, (op, expected)
        applied = self.commit(txn)
        self.model = shadow
        if isinstance(op, CreateOp):
            created = applied.results[0]["path"]
            assert created in self.model.nodes
            assert applied.results[0]["stat"][8] == len(op.data)

    @rule(data=st.data())
    def multi(self, data: st.DataObject) -> None:
        ops = data.draw(st.lists(ops_for(self.existing()), min_size=1, max_size=4))
        sid = self.session(data)
        shadow = copy.deepcopy(self.model)
        failed: tuple[int, type[ServerError]] | None = None
        for index, op in enumerate(ops):
            try:
                shadow.run(op, sid, self.now)
            except ServerError as exc:
                failed = (index, type(exc))
                break
        try:
            txn = self.machine.prepare_multi(sid, ops, self.now)
        except MultiFailure as failure:
            assert failed == (failure.index, type(failure.error)), (ops, failure)
            results = failure.results(len(ops))
            assert [r[0] for r in results[: failure.index]] == [110] * failure.index
            assert results[failure.index][0] == failure.error.code
            assert all(r[0] == 111 for r in results[failure.index + 1 :])
            return
        assert failed is None, (ops, failed)
        applied = self.commit(txn)
        assert len(applied.results) == len(ops)
        self.model = shadow

    @rule(ms=st.sampled_from([1, 10, 40, 50, 200, 500]))
    def advance_clock(self, ms: int) -> None:
        self.now += ms

    @rule()
    def reap(self) -> None:
        expected = self.model.reapable(self.now)
        txn = self.machine.prepare_reap(self.now)
        if txn is None:
            assert expected == []
            return
        assert [op[1] for op in txn.ops] == expected
        for path in expected:
            self.model.delete(DeleteOp(path))
        self.commit(txn)

    @invariant()
    def tree_matches_model(self) -> None:
        tree = self.machine.tree
        assert set(tree.nodes) == set(self.model.nodes)
        last = self.machine.last_zxid
        for path, expected in self.model.nodes.items():
            node = tree.nodes[path]
            stat = node.stat()
            assert node.data == expected.data, path
            assert stat.version == expected.version, path
            assert stat.cversion == expected.cversion, path
            assert stat.ephemeral_owner == expected.owner, path
            assert node.children == expected.children, path
            assert stat.num_children == len(expected.children)
            assert stat.data_length == len(expected.data)
            assert stat.czxid <= stat.mzxid <= last
            assert stat.czxid <= stat.pzxid <= last
            assert stat.ctime <= stat.mtime
        assert set(self.machine.sessions) == self.model.sessions
        owned = {p for paths_ in tree.ephemerals.values() for p in paths_}
        assert owned == {p for p, n in self.model.nodes.items() if n.owner}

    def teardown(self) -> None:
        image = self.machine.snapshot()
        replayed = StateMachine(max_data_bytes=MAX_DATA)
        for txn in self.log:
            replayed.apply(roundtrip(txn))
        assert replayed.snapshot() == image
        packed = msgpack.packb(image, use_bin_type=True)
        restored = StateMachine.restore(msgpack.unpackb(packed, raw=False, strict_map_key=False))
        assert restored.snapshot() == image
        assert restored.tree.empty_containers == self.machine.tree.empty_containers
        assert restored.tree.ttl_nodes == self.machine.tree.ttl_nodes
        assert restored.tree.reapable(self.now) == self.machine.tree.reapable(self.now)


TreeMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTreeMachine = pytest.mark.slow(TreeMachine.TestCase)
