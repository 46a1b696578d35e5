"""Sans-IO parts of the coordinator client: hosts, back-off, retry, arguments,
watch registry and transaction results."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.client.hosts import HostAddress, HostList, parse_hosts
from coordinator.client.requests import check_path, create_mode, create_payload
from coordinator.client.retry import Backoff, RetryPolicy
from coordinator.client.transaction import TransactionBuilder, first_error
from coordinator.client.watch_registry import REMOVE_KINDS, WatchKind, WatchRegistry
from coordinator.errors import (
    BadVersionError,
    NoNodeError,
    NotConnectedError,
    RolledBackError,
    RuntimeInconsistencyError,
    SessionExpiredError,
)
from coordinator.protocol import CreateMode, EventType, Stat, WatchedEvent

# ------------------------------------------------------------------ hosts


def test_parse_hosts() -> None:
    assert parse_hosts("a:1, b:2,c") == [
        HostAddress("a", 1),
        HostAddress("b", 2),
        HostAddress("c", 2181),
    ]
    assert parse_hosts("[::1]:7") == [HostAddress("::1", 7)]
    assert str(HostAddress("::1", 7)) == "[::1]:7"


@pytest.mark.parametrize("bad", ["", ",", "a:0", "a:x", ":5", "a:1/chroot", "[::1"])
def test_parse_hosts_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hosts(bad)


@given(st.integers(1, 8), st.integers(0, 1000))
def test_host_list_round_robin_visits_every_host(n: int, seed: int) -> None:
    addresses = [HostAddress(f"h{i}", 1000 + i) for i in range(n)]
    hosts = HostList(addresses, rng=random.Random(seed))
    first_round = [hosts.next() for _ in range(n)]
    assert sorted(first_round, key=str) == sorted(addresses, key=str)
    assert [hosts.next() for _ in range(n)] == first_round


# ---------------------------------------------------------------- back-off


@given(st.integers(0, 1000))
def test_backoff_grows_within_bounds_and_resets(seed: int) -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(seed))
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert delays[-1] >= 0.5
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_tries=4, delay=0.1, backoff=2, max_delay=0.3, deadline=None)
    assert list(policy.delays()) == pytest.approx([0.1, 0.2, 0.3])
    assert list(RetryPolicy(max_tries=10, delay=1, backoff=1, deadline=2.5).delays()) == [1, 1]
    assert policy.is_retriable(NotConnectedError())
    assert not policy.is_retriable(SessionExpiredError())
    with pytest.raises(ValueError):
        RetryPolicy(max_tries=0)


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize("path", ["/", "/a", "/a/b-c.d", "/a/..b"])
def test_valid_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/..", "/a\x00"])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(ValueError):
        check_path(path)


def test_path_type_and_sequential_trailing_slash() -> None:
    with pytest.raises(TypeError):
        check_path(b"/a")
    assert check_path("/q/", sequential=True) == "/q/"


def test_create_modes() -> None:
    def mode(**kw: object) -> CreateMode:
        args: dict[str, object] = {
            "ephemeral": False,
            "sequential": False,
            "container": False,
            "ttl": None,
            **kw,
        }
        return create_mode(**args)  # type: ignore[arg-type]

    assert mode() is CreateMode.PERSISTENT
    assert mode(sequential=True) is CreateMode.PERSISTENT_SEQUENTIAL
    assert mode(ephemeral=True) is CreateMode.EPHEMERAL
    assert mode(ephemeral=True, sequential=True) is CreateMode.EPHEMERAL_SEQUENTIAL
    assert mode(container=True) is CreateMode.CONTAINER
    assert mode(ttl=1.5) is CreateMode.PERSISTENT_WITH_TTL
    assert mode(ttl=1, sequential=True) is CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL
    for bad in (
        {"ttl": 1, "ephemeral": True},
        {"container": True, "sequential": True},
        {"ttl": 0},
        {"ttl": float("nan")},
    ):
        with pytest.raises(ValueError):
            mode(**bad)
    with pytest.raises(TypeError):
        mode(ttl="5")


def test_create_payload() -> None:
    payload = create_payload(
        "/t",
        bytearray(b"x"),
        ephemeral=False,
        sequential=False,
        make_parents=True,
        container=False,
        ttl=2.5,
    )
    assert payload == {"path": "/t", "data": b"x", "mode": 5, "make_parents": True, "ttl_ms": 2500}
    with pytest.raises(TypeError):
        create_payload(
            "/t",
            "text",
            ephemeral=False,
            sequential=False,
            make_parents=False,
            container=False,
            ttl=None,
        )


# --------------------------------------------------------- watch registry


def _event(kind: str, path: str) -> WatchedEvent:
    return WatchedEvent(kind, path, 1)


def _watcher(log: list[str], name: str) -> Callable[[WatchedEvent], None]:
    return lambda event: log.append(name)


def test_one_shot_watches_fire_once_per_zookeeper_rules() -> None:
    reg = WatchRegistry()
    log: list[str] = []
    data, exist, child = _watcher(log, "d"), _watcher(log, "e"), _watcher(log, "c")
    reg.add(WatchKind.DATA, "/a", data)
    reg.add(WatchKind.EXIST, "/a", exist)
    reg.add(WatchKind.CHILD, "/a", child)
    assert reg.fire(_event(EventType.CHILDREN_CHANGED, "/a")) == [child]
    assert reg.fire(_event(EventType.CHILDREN_CHANGED, "/a")) == []
    assert reg.fire(_event(EventType.DATA_CHANGED, "/a")) == [data, exist]
    assert reg.fire(_event(EventType.DELETED, "/a")) == []
    assert len(reg) == 0


def test_deleted_fires_every_one_shot_kind_and_dedups_watchers() -> None:
    reg = WatchRegistry()
    w = _watcher([], "w")
    assert reg.add(WatchKind.DATA, "/a", w)
    assert not reg.add(WatchKind.DATA, "/a", w)
    reg.add(WatchKind.CHILD, "/a", w)
    assert reg.fire(_event(EventType.DELETED, "/a")) == [w]


def test_persistent_and_recursive_watches() -> None:
    reg = WatchRegistry()
    p, r, root = _watcher([], "p"), _watcher([], "r"), _watcher([], "root")
    reg.add(WatchKind.PERSISTENT, "/a", p)
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a", r)
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/", root)
    assert reg.fire(_event(EventType.DATA_CHANGED, "/a")) == [p, r, root]
    assert reg.fire(_event(EventType.CREATED, "/a/b/c")) == [r, root]
    # Recursive watches do not see child-list events; plain persistent ones do.
    assert reg.fire(_event(EventType.CHILDREN_CHANGED, "/a")) == [p]
    assert reg.fire(_event(EventType.CREATED, "/ab")) == [root]
    assert len(reg) == 3
    reg.clear_one_shot()
    assert len(reg) == 3
    assert reg.remove("/a", REMOVE_KINDS["persistent"]) == 2


def test_set_watches_payload_lists_every_kind() -> None:
    reg = WatchRegistry()
    assert reg.set_watches_payload(5) is None
    w = _watcher([], "w")
    reg.add(WatchKind.EXIST, "/x", w)
    reg.move(WatchKind.EXIST, WatchKind.DATA, "/x", w)
    reg.add(WatchKind.CHILD, "/y", w)
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/", w)
    assert reg.set_watches_payload(9) == {
        "last_zxid": 9,
        "data": ["/x"],
        "exist": [],
        "child": ["/y"],
        "persistent": [],
        "persistent_recursive": ["/"],
    }


# ------------------------------------------------------------ transactions


def _stat_wire(version: int) -> list[int]:
    return Stat(1, 2, 1, 0, 0, version, 0, 0, 0, 0).to_wire()


def test_transaction_results_success_and_failure() -> None:
    tx = TransactionBuilder()
    tx.check("/a", 0)
    tx.create("/b", b"x", sequential=True)
    tx.set_data("/a", b"y")
    tx.delete("/c")
    payload = tx.payload()
    assert [op for op, _ in payload["ops"]] == ["check", "create", "set", "delete"]
    with pytest.raises(ValueError):
        tx.payload()
    ok = tx.results(
        {"results": [[0, {}], [0, {"path": "/b0001"}], [0, {"stat": _stat_wire(1)}], [0, {}]]}
    )
    assert ok[0] is True and ok[1] == "/b0001" and ok[3] is True
    assert isinstance(ok[2], Stat) and ok[2].version == 1
    failed = tx.results({"results": [[110, ""], [110, ""], [102, "/a"], [111, ""]]})
    assert [type(r) for r in failed] == [
        RolledBackError,
        RolledBackError,
        BadVersionError,
        RuntimeInconsistencyError,
    ]
    assert isinstance(first_error(failed), BadVersionError)
    assert first_error(ok) is None


def test_transaction_rejects_bad_arguments_before_sending() -> None:
    tx = TransactionBuilder()
    with pytest.raises(ValueError):
        tx.check("no-slash", 0)
    with pytest.raises(TypeError):
        tx.delete("/a", version="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tx.set_data("/a", b"", version=-2)
    assert tx.ops == []
    assert isinstance(NoNodeError("x"), Exception)
