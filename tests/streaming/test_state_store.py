"""The state store against a dict: puts, removes, eviction, commit/abort, and
recovery of any committed version from snapshot + delta files."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from client.streaming.errors import CheckpointError
from client.streaming.state import StateFiles, StateStore

KEYS = st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 3))
VALUES = st.tuples(
    st.integers(-5, 5), st.one_of(st.none(), st.text(max_size=3), st.floats(allow_nan=False))
)
EXPIRY = st.one_of(st.none(), st.integers(0, 20))


class StateStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="rivulet-state-test-")
        self.files = StateFiles(self.dir, snapshot_interval=3)
        self.store = StateStore()
        self.model: dict[Any, tuple[Any, int | None]] = {}
        self.committed: dict[Any, tuple[Any, int | None]] = {}
        self.versions: dict[int, dict[Any, tuple[Any, int | None]]] = {0: {}}
        self.purged_below = 0

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=KEYS, value=VALUES, expiry=EXPIRY)
    def put(self, key: Any, value: Any, expiry: int | None) -> None:
        self.store.put(key, value, expiry)
        self.model[key] = (value, expiry)

    @rule(key=KEYS)
    def remove(self, key: Any) -> None:
        old = self.store.remove(key)
        expected = self.model.pop(key, None)
        assert old == (None if expected is None else expected[0])

    @rule(watermark=st.integers(0, 20))
    def evict(self, watermark: int) -> None:
        got = self.store.evict(watermark)
        want = [k for k, (_, e) in self.model.items() if e is not None and e <= watermark]
        assert sorted((k for k, _ in got), key=repr) == sorted(want, key=repr)
        expiries = [self.model[k][1] for k, _ in got]
        assert expiries == sorted(expiries)  # expiry order
        for k, v in got:
            assert self.model.pop(k)[0] == v

    @rule()
    def commit(self) -> None:
        delta = self.store.commit()
        self.files.write(self.store, delta)
        self.committed = dict(self.model)
        self.versions[self.store.version] = dict(self.model)

    @rule()
    def abort(self) -> None:
        self.store.abort()
        self.model = dict(self.committed)

    @precondition(lambda self: self.store.version > 0)
    @rule(data=st.data())
    def reload_a_version(self, data: st.DataObject) -> None:
        version = data.draw(st.integers(self.purged_below, self.store.version))
        loaded = StateFiles(self.dir, snapshot_interval=3).load(version)
        assert loaded.version == version
        assert {k: (v, e) for k, v, e in loaded.entries()} == self.versions[version]

    @precondition(lambda self: self.store.version > 0)
    @rule()
    def restart_from_latest(self) -> None:
        """The process dies: uncommitted changes are lost; the last version is reloaded."""
        self.store = self.files.load(self.store.version)
        self.model = dict(self.committed)

    @precondition(lambda self: self.store.version > 1)
    @rule(data=st.data())
    def purge(self, data: st.DataObject) -> None:
        keep_from = data.draw(st.integers(self.purged_below, self.store.version))
        self.files.purge(keep_from)
        self.purged_below = keep_from

    @invariant()
    def matches_model(self) -> None:
        assert {k: (v, e) for k, v, e in self.store.entries()} == self.model
        assert len(self.store) == len(self.model)
        for k, (v, _) in self.model.items():
            assert self.store.get(k) == v and k in self.store


StateStoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
TestStateStore = StateStoreMachine.TestCase


def test_missing_delta_is_reported(tmp_path: Any) -> None:
    files = StateFiles(str(tmp_path), snapshot_interval=100)
    store = StateStore()
    for i in range(3):
        store.put((i,), (i,))
        files.write(store, _commit(store))
    (tmp_path / "2.delta").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        files.load(3)


def test_corrupt_file_is_reported(tmp_path: Any) -> None:
    files = StateFiles(str(tmp_path))
    store = StateStore()
    store.put(("k",), (1,))
    files.write(store, _commit(store))
    path = tmp_path / "1.delta"
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(CheckpointError, match="corrupt"):
        files.load(1)


def test_discard_after(tmp_path: Any) -> None:
    files = StateFiles(str(tmp_path), snapshot_interval=2)
    store = StateStore()
    for i in range(4):
        store.put((i,), (i,))
        files.write(store, _commit(store))
    files.discard_after(2)
    deltas, snaps = files.listing()
    assert deltas == {1, 2} and snaps == {2}


def _commit(store: StateStore) -> Any:
    return store.commit()
