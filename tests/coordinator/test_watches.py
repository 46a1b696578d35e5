"""The sans-IO watch manager: one-shot, persistent, recursive, removal, SET_WATCHES."""

from __future__ import annotations

import pytest

from coordinator.errors import NoWatcherError
from coordinator.protocol import EventType
from coordinator.watches import NodeZxids, WatchManager

CREATED = EventType.CREATED
DELETED = EventType.DELETED
DATA = EventType.DATA_CHANGED
CHILDREN = EventType.CHILDREN_CHANGED


@pytest.fixture
def wm() -> WatchManager[str]:
    return WatchManager()


def test_data_watch_is_one_shot(wm: WatchManager[str]) -> None:
    wm.add_data("/a", "w1")
    wm.add_data("/a", "w2")
    assert sorted(wm.trigger(DATA, "/a")) == ["w1", "w2"]
    assert wm.trigger(DATA, "/a") == []
    assert len(wm) == 0 and wm.empty


def test_exist_watch_fires_on_create(wm: WatchManager[str]) -> None:
    wm.add_data("/missing", "w")
    assert wm.trigger(CHILDREN, "/missing") == []
    assert wm.trigger(CREATED, "/missing") == ["w"]


def test_child_watch(wm: WatchManager[str]) -> None:
    wm.add_child("/p", "w")
    assert wm.trigger(DATA, "/p") == []
    assert wm.trigger(CREATED, "/p") == []
    assert wm.trigger(CHILDREN, "/p") == ["w"]
    assert wm.trigger(CHILDREN, "/p") == []


def test_delete_fires_once_for_data_and_child_watches(wm: WatchManager[str]) -> None:
    wm.add_data("/n", "w")
    wm.add_child("/n", "w")
    wm.add_child("/n", "other")
    assert sorted(wm.trigger(DELETED, "/n")) == ["other", "w"]
    assert len(wm) == 0


def test_persistent_watch_survives_and_sees_children(wm: WatchManager[str]) -> None:
    wm.add_persistent("/p", "w", "persistent")
    for event in (CREATED, DATA, CHILDREN, DELETED, CREATED):
        assert wm.trigger(event, "/p") == ["w"]
    assert wm.trigger(DATA, "/p/child") == []
    assert len(wm) == 1


def test_recursive_watch(wm: WatchManager[str]) -> None:
    wm.add_persistent("/r", "w", "persistent_recursive")
    assert wm.trigger(CREATED, "/r") == ["w"]
    assert wm.trigger(CREATED, "/r/a/b") == ["w"]
    assert wm.trigger(DATA, "/r/a") == ["w"]
    assert wm.trigger(DELETED, "/r/a/b") == ["w"]
    assert wm.trigger(CHILDREN, "/r") == []  # recursive watches never get children_changed
    assert wm.trigger(DATA, "/rr") == []
    assert wm.trigger(DATA, "/") == []
    wm.add_persistent("/", "root", "persistent_recursive")
    assert sorted(wm.trigger(DATA, "/r/x")) == ["root", "w"]


def test_one_event_per_watcher_per_change(wm: WatchManager[str]) -> None:
    wm.add_data("/a/b", "w")
    wm.add_persistent("/a/b", "w", "persistent")
    wm.add_persistent("/a", "w", "persistent_recursive")
    wm.add_persistent("/", "w", "persistent_recursive")
    assert wm.trigger(DATA, "/a/b") == ["w"]


def test_remove(wm: WatchManager[str]) -> None:
    wm.add_data("/a", "w")
    wm.add_child("/a", "w")
    wm.add_persistent("/a", "w", "persistent")
    wm.add_persistent("/a", "w", "persistent_recursive")
    wm.remove("/a", "w", "data")
    with pytest.raises(NoWatcherError):
        wm.remove("/a", "w", "data")
    wm.remove("/a", "w", "persistent")  # both persistent modes
    assert wm.watches_of("w") == {("child", "/a")}
    with pytest.raises(NoWatcherError):
        wm.remove("/a", "other", "any")
    wm.remove("/a", "w", "any")
    assert wm.empty
    with pytest.raises(NoWatcherError):
        wm.remove("/a", "w", "child")
    with pytest.raises(ValueError):
        wm.remove("/a", "w", "bogus")
    with pytest.raises(ValueError):
        wm.add_persistent("/a", "w", "bogus")


def test_remove_watcher_drops_everything(wm: WatchManager[str]) -> None:
    wm.add_data("/a", "gone")
    wm.add_child("/b", "gone")
    wm.add_persistent("/c", "gone", "persistent_recursive")
    wm.add_data("/a", "stays")
    assert wm.remove_watcher("gone") == 3
    assert wm.remove_watcher("gone") == 0
    assert wm.trigger(DATA, "/a") == ["stays"]
    assert wm.trigger(CHILDREN, "/b") == []
    assert wm.trigger(CREATED, "/c/x") == []


def test_set_watches_catch_up(wm: WatchManager[str]) -> None:
    nodes = {
        "/same": NodeZxids(czxid=2, mzxid=5, pzxid=5),
        "/changed": NodeZxids(czxid=2, mzxid=11, pzxid=2),
        "/kids": NodeZxids(czxid=2, mzxid=2, pzxid=12),
        "/new": NodeZxids(czxid=13, mzxid=13, pzxid=13),
        "/old": NodeZxids(czxid=3, mzxid=3, pzxid=3),
    }
    fired = wm.set_watches(
        "w",
        10,
        nodes.get,
        data=["/same", "/changed", "/gone"],
        exist=["/new", "/still-missing", "/old"],
        child=["/same", "/kids", "/gone-parent"],
        persistent=["/p"],
        persistent_recursive=["/r"],
    )
    assert fired == [
        (DATA, "/changed"),
        (DELETED, "/gone"),
        (CREATED, "/new"),
        (CHILDREN, "/kids"),
        (DELETED, "/gone-parent"),
    ]
    assert wm.watches_of("w") == {
        ("data", "/same"),
        ("data", "/still-missing"),
        ("data", "/old"),
        ("child", "/same"),
        ("persistent", "/p"),
        ("persistent_recursive", "/r"),
    }
    assert wm.trigger(CREATED, "/still-missing") == ["w"]
    assert wm.trigger(DATA, "/r/deep") == ["w"]
