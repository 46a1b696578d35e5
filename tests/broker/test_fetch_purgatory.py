"""The fetch purgatory against a small model (hypothesis stateful test)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.fetch_purgatory import FetchPurgatory

TPS = [("a", 0), ("a", 1), ("b", 0)]


class PurgatoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.purgatory: FetchPurgatory[int] = FetchPurgatory()
        # Model: waiter -> [partitions, bytes still needed, deadline].
        self.model: dict[int, tuple[set[tuple[str, int]], int, float]] = {}
        self.next_id = 0
        self.now = 0.0
        self.completed: set[int] = set()

    def _done(self, waiters: list[int]) -> None:
        assert len(waiters) == len(set(waiters)), "a waiter completed twice in one call"
        for w in waiters:
            assert w not in self.completed, "a waiter completed twice"
            self.completed.add(w)
            del self.model[w]

    @rule(
        tps=st.sets(st.sampled_from(TPS), min_size=1),
        needed=st.integers(1, 100),
        wait=st.floats(0, 10),
    )
    def park(self, tps: set[tuple[str, int]], needed: int, wait: float) -> None:
        w = self.next_id
        self.next_id += 1
        self.purgatory.park(w, sorted(tps), needed, self.now + wait)
        self.model[w] = (set(tps), needed, self.now + wait)

    @rule(tp=st.sampled_from(TPS), nbytes=st.integers(0, 60))
    def visible(self, tp: tuple[str, int], nbytes: int) -> None:
        expected = set()
        if nbytes > 0:
            for w, (tps, needed, deadline) in list(self.model.items()):
                if tp in tps:
                    self.model[w] = (tps, needed - nbytes, deadline)
                    if needed - nbytes <= 0:
                        expected.add(w)
        got = self.purgatory.visible(tp, nbytes)
        assert set(got) == expected
        self._done(got)

    @rule(tp=st.sampled_from(TPS))
    def wake_partition(self, tp: tuple[str, int]) -> None:
        expected = {w for w, (tps, _, _) in self.model.items() if tp in tps}
        got = self.purgatory.wake_partition(tp)
        assert set(got) == expected
        self._done(got)

    @rule(dt=st.floats(0, 5))
    def tick(self, dt: float) -> None:
        self.now += dt
        expected = {w for w, (_, _, deadline) in self.model.items() if deadline <= self.now}
        got = self.purgatory.expire(self.now)
        assert set(got) == expected
        deadlines = [self.model[w][2] for w in got]
        assert deadlines == sorted(deadlines), "expired out of deadline order"
        self._done(got)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from(sorted(self.model)))
        assert self.purgatory.cancel(w)
        assert not self.purgatory.cancel(w)
        del self.model[w]

    @invariant()
    def agrees(self) -> None:
        assert len(self.purgatory) == len(self.model)
        deadlines = [d for _, _, d in self.model.values()]
        assert self.purgatory.next_deadline() == (min(deadlines) if deadlines else None)
        for w in self.model:
            assert w in self.purgatory


TestPurgatory = PurgatoryMachine.TestCase
TestPurgatory.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_a_waiter_cannot_park_twice() -> None:
    purgatory: FetchPurgatory[str] = FetchPurgatory()
    purgatory.park("w", [("t", 0)], 1, 1.0)
    try:
        purgatory.park("w", [("t", 0)], 1, 1.0)
    except ValueError:
        pass
    else:
        raise AssertionError("parked twice")


def test_wake_all_empties_it() -> None:
    purgatory: FetchPurgatory[str] = FetchPurgatory()
    purgatory.park("x", [("t", 0), ("t", 1)], 5, 3.0)
    purgatory.park("y", [("t", 1)], 5, 1.0)
    assert sorted(purgatory.wake_all()) == ["x", "y"]
    assert len(purgatory) == 0 and purgatory.next_deadline() is None
