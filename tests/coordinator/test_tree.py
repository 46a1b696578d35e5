"""Unit tests of the sans-IO tree and state machine (ZooKeeper semantics, edge cases)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from coordinator.errors import (
    BadArgumentsError,
    BadVersionError,
    DataTooLargeError,
    InvalidPathError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
)
from coordinator.protocol import CreateMode, EventType, Stat
from coordinator.state_machine import (
    OP_DELETE,
    OP_SESSION_CLOSE,
    CheckOp,
    CreateOp,
    DeleteOp,
    MultiFailure,
    Op,
    SetOp,
    StateMachine,
    Txn,
)

NOW = 1_700_000_000_000


class Harness:
    """A machine plus a clock; every committed txn also goes through msgpack."""

    def __init__(self, **kwargs: Any) -> None:
        self.m = StateMachine(**kwargs)
        self.now = NOW
        self.txns: list[Txn] = []
        self.changes: list[tuple[str, str]] = []
        self.session = self.open_session()

    def commit(self, txn: Txn) -> list[dict[str, Any]]:
        wire = msgpack.unpackb(msgpack.packb(txn), raw=False)
        self.txns.append(txn)
        applied = self.m.apply(Txn.from_wire(wire))
        self.changes.extend(applied.changes)
        return applied.results

    def open_session(self) -> int:
        result = self.commit(self.m.prepare_create_session(4000, b"secret", self.now))
        session_id: int = result[0]["session_id"]
        return session_id

    def do(self, op: Op, session: int | None = None) -> dict[str, Any]:
        sid = self.session if session is None else session
        return self.commit(self.m.prepare(sid, op, self.now))[0]

    def create(self, path: str, mode: CreateMode = CreateMode.PERSISTENT, **kw: Any) -> str:
        created: str = self.do(CreateOp(path, mode=int(mode), **kw))["path"]
        return created

    def stat(self, path: str) -> Stat:
        return self.m.node(path).stat()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_create_get_set_delete_bookkeeping(h: Harness) -> None:
    h.create("/a", data=b"one")
    zxid_a = h.m.last_zxid
    a = h.stat("/a")
    assert (a.czxid, a.mzxid, a.pzxid, a.version, a.cversion) == (zxid_a, zxid_a, zxid_a, 0, 0)
    assert (a.ctime, a.mtime, a.data_length, a.num_children, a.ephemeral_owner) == (
        NOW,
        NOW,
        3,
        0,
        0,
    )
    h.now += 5
    h.do(SetOp("/a", b"two!", 0))
    a = h.stat("/a")
    assert (a.version, a.mzxid, a.mtime, a.ctime, a.data_length) == (
        1,
        h.m.last_zxid,
        NOW + 5,
        NOW,
        4,
    )
    h.create("/a/b")
    a = h.stat("/a")
    assert (a.cversion, a.pzxid, a.num_children, a.mzxid) == (1, h.m.last_zxid, 1, zxid_a + 1)
    h.do(DeleteOp("/a/b", 0))
    a = h.stat("/a")
    assert (a.cversion, a.pzxid, a.num_children) == (2, h.m.last_zxid, 0)
    assert h.changes[-2:] == [(EventType.DELETED, "/a/b"), (EventType.CHILDREN_CHANGED, "/a")]


def test_errors_and_version_checks(h: Harness) -> None:
    h.create("/a")
    h.create("/a/b")
    with pytest.raises(NodeExistsError):
        h.create("/a")
    with pytest.raises(NodeExistsError):
        h.create("/")
    with pytest.raises(NoNodeError):
        h.create("/x/y")
    with pytest.raises(BadVersionError):
        h.do(SetOp("/a", b"", 3))
    with pytest.raises(NotEmptyError):
        h.do(DeleteOp("/a"))
    with pytest.raises(BadVersionError):
        h.do(DeleteOp("/a/b", 1))
    with pytest.raises(NoNodeError):
        h.do(DeleteOp("/nope"))
    with pytest.raises(BadArgumentsError):
        h.do(DeleteOp("/"))
    with pytest.raises(InvalidPathError):
        h.create("/a/")
    with pytest.raises(BadArgumentsError):
        h.do(SetOp("/a", b"", -2))
    with pytest.raises(BadArgumentsError):
        h.do(CreateOp("/m", mode=42))
    assert h.m.last_zxid == 3  # nothing failed got a zxid


def test_data_limit() -> None:
    h = Harness(max_data_bytes=4)
    h.create("/ok", data=b"1234")
    with pytest.raises(DataTooLargeError):
        h.create("/big", data=b"12345")
    with pytest.raises(DataTooLargeError):
        h.do(SetOp("/ok", b"12345"))


def test_sequential_names_follow_parent_cversion(h: Harness) -> None:
    h.create("/q")
    assert h.create("/q/n-", CreateMode.PERSISTENT_SEQUENTIAL) == "/q/n-0000000000"
    h.create("/q/plain")
    assert h.create("/q/n-", CreateMode.EPHEMERAL_SEQUENTIAL) == "/q/n-0000000002"
    h.do(DeleteOp("/q/plain"))
    # A delete is a change to the children too, so the counter moved on.
    assert h.create("/q/", CreateMode.PERSISTENT_SEQUENTIAL) == "/q/0000000004"
    assert h.m.node("/q/n-0000000002").stat().ephemeral_owner == h.session


def test_make_parents(h: Harness) -> None:
    created = h.do(CreateOp("/x/y/z", b"d", make_parents=True))
    assert created["path"] == "/x/y/z"
    assert h.m.node("/x").data == b"" and h.m.node("/x/y").children == {"z"}
    assert h.stat("/x").cversion == 1 and h.stat("/x/y").cversion == 1
    assert [c for c in h.changes if c[0] == EventType.CREATED][-3:] == [
        (EventType.CREATED, "/x"),
        (EventType.CREATED, "/x/y"),
        (EventType.CREATED, "/x/y/z"),
    ]
    # One zxid for the whole create.
    assert h.stat("/x").czxid == h.stat("/x/y/z").czxid
    seq = h.do(CreateOp("/s/t/n", mode=int(CreateMode.PERSISTENT_SEQUENTIAL), make_parents=True))
    assert seq["path"] == "/s/t/n0000000000"


def test_ephemerals(h: Harness) -> None:
    h.create("/e", CreateMode.EPHEMERAL)
    with pytest.raises(NoChildrenForEphemeralsError):
        h.create("/e/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        h.do(CreateOp("/e/a/b", make_parents=True))
    with pytest.raises(SessionExpiredError):
        h.do(CreateOp("/e2", mode=int(CreateMode.EPHEMERAL)), session=12345)
    other = h.open_session()
    h.create("/p")
    h.do(CreateOp("/p/mine", mode=int(CreateMode.EPHEMERAL)), session=other)
    close = h.m.prepare_close_session(h.session, h.now)
    assert [op[0] for op in close.ops] == [OP_DELETE, OP_SESSION_CLOSE]
    h.commit(close)
    assert h.m.tree.get("/e") is None
    assert h.m.tree.get("/p/mine") is not None
    assert h.session not in h.m.sessions
    with pytest.raises(SessionExpiredError):
        h.m.prepare_close_session(h.session, h.now)
    assert h.m.tree.ephemerals == {other: {"/p/mine"}}


def test_ttl_only_with_ttl_modes(h: Harness) -> None:
    with pytest.raises(BadArgumentsError):
        h.do(CreateOp("/t", ttl_ms=100))
    with pytest.raises(BadArgumentsError):
        h.do(CreateOp("/t", mode=int(CreateMode.PERSISTENT_WITH_TTL)))
    with pytest.raises(BadArgumentsError):
        h.do(CreateOp("/t", mode=int(CreateMode.PERSISTENT_WITH_TTL), ttl_ms=-5))


def test_container_reaped_only_after_it_had_a_child(h: Harness) -> None:
    h.create("/c", CreateMode.CONTAINER)
    assert h.m.prepare_reap(h.now + 10**9) is None
    h.create("/c/kid")
    assert h.m.prepare_reap(h.now) is None
    h.do(DeleteOp("/c/kid"))
    reap = h.m.prepare_reap(h.now)
    assert reap is not None and reap.ops == [[OP_DELETE, "/c"]]
    h.commit(reap)
    assert h.m.tree.get("/c") is None
    assert h.changes[-2:] == [(EventType.DELETED, "/c"), (EventType.CHILDREN_CHANGED, "/")]


def test_ttl_node_reaped_when_unmodified_and_childless(h: Harness) -> None:
    h.create("/t", CreateMode.PERSISTENT_WITH_TTL, ttl_ms=100)
    h.create("/t/kid")
    assert h.m.prepare_reap(h.now + 1000) is None  # has a child
    h.do(DeleteOp("/t/kid"))
    assert h.m.prepare_reap(h.now + 100) is None  # exactly the TTL: not yet
    h.now += 50
    h.do(SetOp("/t", b"touch"))  # a modification restarts the clock
    assert h.m.prepare_reap(h.now + 100) is None
    reap = h.m.prepare_reap(h.now + 101)
    assert reap is not None and reap.ops == [[OP_DELETE, "/t"]]
    seq = h.create("/t-", CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, ttl_ms=1)
    assert seq.startswith("/t-00000000")


def test_multi_all_or_nothing(h: Harness) -> None:
    h.create("/m", data=b"v0")
    ops: list[Op] = [
        CheckOp("/m", 0),
        CreateOp("/m/a"),
        CreateOp("/m/a/b"),  # sees the create before it
        SetOp("/m", b"v1", 0),
        DeleteOp("/m/a/b"),
    ]
    txn = h.m.prepare_multi(h.session, ops, h.now)
    results = h.commit(txn)
    assert results[0] == {} and results[1]["path"] == "/m/a" and results[3]["stat"][5] == 1
    assert h.m.node("/m/a").children == set()
    assert h.stat("/m").version == 1
    zxid = h.m.last_zxid
    bad: list[Op] = [SetOp("/m", b"v2", 1), CreateOp("/m/a"), DeleteOp("/m/zz")]
    with pytest.raises(MultiFailure) as failure:
        h.m.prepare_multi(h.session, bad, h.now)
    assert failure.value.index == 1 and isinstance(failure.value.error, NodeExistsError)
    codes = [r[0] for r in failure.value.results(3)]
    assert codes == [110, NodeExistsError.code, 111]
    assert h.m.last_zxid == zxid and h.stat("/m").version == 1


def test_multi_sequential_and_delete_then_recreate(h: Harness) -> None:
    h.create("/q")
    ops: list[Op] = [
        CreateOp("/q/n", mode=int(CreateMode.PERSISTENT_SEQUENTIAL)),
        CreateOp("/q/n", mode=int(CreateMode.PERSISTENT_SEQUENTIAL)),
    ]
    results = h.commit(h.m.prepare_multi(h.session, ops, h.now))
    assert [r["path"] for r in results] == ["/q/n0000000000", "/q/n0000000001"]
    recreate: list[Op] = [DeleteOp("/q/n0000000000"), CreateOp("/q/n0000000000", b"again")]
    h.commit(h.m.prepare_multi(h.session, recreate, h.now))
    assert h.m.node("/q/n0000000000").data == b"again"
    with pytest.raises(MultiFailure) as failure:
        h.m.prepare_multi(h.session, [DeleteOp("/q"), CheckOp("/q")], h.now)
    assert isinstance(failure.value.error, NotEmptyError)


def test_session_ids_are_unique_and_time_seeded() -> None:
    m = StateMachine()
    first = m.apply(m.prepare_create_session(3000, b"p", NOW)).results[0]["session_id"]
    second = m.apply(m.prepare_create_session(3000, b"p", NOW)).results[0]["session_id"]
    assert second == first + 1
    assert first >= NOW << 12


def test_snapshot_restore_and_replay_are_identical(h: Harness) -> None:
    h.create("/a", data=b"1")
    h.create("/a/e", CreateMode.EPHEMERAL)
    h.create("/c", CreateMode.CONTAINER)
    h.create("/c/k")
    h.do(DeleteOp("/c/k"))
    h.create("/t", CreateMode.PERSISTENT_WITH_TTL, ttl_ms=10)
    image = h.m.snapshot()
    restored = StateMachine.restore(msgpack.unpackb(msgpack.packb(image), raw=False))
    assert restored.snapshot() == image
    assert restored.tree.empty_containers == {"/c"}
    assert restored.tree.ttl_nodes == {"/t"}
    assert restored.tree.ephemerals == {h.session: {"/a/e"}}
    replayed = StateMachine()
    for txn in h.txns:
        replayed.apply(txn)
    assert replayed.snapshot() == image


def test_apply_rejects_old_txns_and_bad_records(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.m.apply(Txn(1, NOW, []))
    with pytest.raises(ValueError):
        Txn.from_wire([1, 2])
    with pytest.raises(ValueError):
        h.m.apply(Txn(h.m.last_zxid + 1, NOW, [[99]]))
    with pytest.raises(ValueError):
        StateMachine.restore({"format": 99})
    with pytest.raises(ValueError):
        StateMachine.restore({"format": 1, "last_zxid": 1})
    with pytest.raises(ValueError):
        StateMachine.restore(
            {
                "format": 1,
                "last_zxid": 1,
                "last_session_id": 0,
                "sessions": [],
                "nodes": [["/a/b", b"", 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]],
            }
        )
