"""The leader's ISR and high-watermark core against a small model (hypothesis, stateful).

The model keeps each replica's true log end; followers fetch forward only (within
one leader epoch a follower never loses what it fetched). Whatever the order of
appends, fsyncs, fetches, clock ticks and ISR changes (proposed, written,
refused, or overridden by the controller):

- the high watermark never decreases and never passes the leader's own offset
  (its fsynced offset under group commit), beyond where it started;
- it never exceeds the log end of any member of the maximal ISR — so every
  replica the controller could elect (the committed ISR) holds everything below it;
- a member only leaves the ISR after lagging for ``lag_max_ms``; a follower only
  joins once it has everything below the high watermark and the epoch start.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.replication.leader_state import UNKNOWN, LeaderState

ME = 0
FOLLOWERS = (1, 2)
LAG_MAX = 1000


class LeaderModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 10_000
        self.leader_end = 50
        self.durable = 40
        self.ends = {1: 50, 2: 30}
        self.initial_hw = 20
        # Replica 2 starts outside the ISR, so that it can join at any time.
        self.state = LeaderState(
            ME,
            [0, 1, 2],
            [0, 1],
            leader_epoch=3,
            epoch_start_offset=50,
            high_watermark=self.initial_hw,
            leader_offset=self.durable,
            now_ms=self.now,
            lag_max_ms=LAG_MAX,
        )
        self.last_hw = self.initial_hw
        self.isr_history: list[list[int]] = [list(self.state.isr)]

    # ------------------------------------------------------------ events

    @rule(n=st.integers(1, 20))
    def append(self, n: int) -> None:
        self.leader_end += n

    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        self.durable = data.draw(st.integers(self.durable, self.leader_end))
        self.state.leader_progress(self.durable)

    @rule(follower=st.sampled_from(FOLLOWERS), data=st.data())
    def fetch(self, follower: int, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.ends[follower], self.leader_end))
        self.ends[follower] = offset
        self.state.follower_fetch(follower, offset, self.leader_end, self.now)

    @rule(dt=st.integers(1, 1500))
    def tick(self, dt: int) -> None:
        self.now += dt

    @precondition(lambda self: self.state.pending is None)
    @rule(shrink=st.booleans())
    def propose(self, shrink: bool) -> None:
        state = self.state
        proposal = state.propose_shrink(self.now) if shrink else state.propose_expand()
        if proposal is None:
            return
        if shrink:
            for r in set(state.isr) - set(proposal):
                progress = state.followers[r]
                assert self.now - progress.last_caught_up_ms > LAG_MAX, "removed while in sync"
        else:
            for r in set(proposal) - set(state.isr):
                end = state.follower_end(r)
                assert end >= state.high_watermark and end >= state.epoch_start_offset
        state.begin_change(proposal)

    @precondition(lambda self: self.state.pending is not None)
    @rule(lands=st.booleans())
    def write_outcome(self, lands: bool) -> None:
        state = self.state
        pending = state.pending
        assert pending is not None
        if lands:
            state.change_committed(pending)
            self.isr_history.append(list(state.isr))
        else:
            state.change_failed()

    @rule(follower=st.sampled_from(FOLLOWERS))
    def controller_removes(self, follower: int) -> None:
        """The controller dropped a follower (it died): a newer state znode."""
        isr = [r for r in self.state.isr if r != follower]
        self.state.isr_from_state(isr)
        self.isr_history.append(list(self.state.isr))

    # ------------------------------------------------------------ invariants

    @invariant()
    def high_watermark_is_monotonic_and_bounded_by_the_leader(self) -> None:
        hw = self.state.high_watermark
        assert hw >= self.last_hw, "the high watermark went down"
        self.last_hw = hw
        assert hw <= max(self.initial_hw, self.durable) <= max(self.initial_hw, self.leader_end)

    @invariant()
    def high_watermark_within_every_isr_member(self) -> None:
        state = self.state
        hw = state.high_watermark
        if hw == self.initial_hw:
            return
        for r in state.maximal_isr:
            if r == ME:
                continue
            known = state.follower_end(r)
            assert known != UNKNOWN and known <= self.ends[r]
            assert hw <= known, f"HW {hw} beyond replica {r} at {known}"

    @invariant()
    def leader_stays_in_its_isr(self) -> None:
        assert ME in self.state.isr and ME in self.state.maximal_isr


TestLeaderState = LeaderModel.TestCase
TestLeaderState.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_high_watermark_waits_for_every_follower_after_a_leader_change() -> None:
    state = LeaderState(
        0,
        [0, 1, 2],
        [0, 1, 2],
        leader_epoch=1,
        epoch_start_offset=10,
        high_watermark=5,
        leader_offset=10,
        now_ms=0,
        lag_max_ms=LAG_MAX,
    )
    assert state.high_watermark == 5
    assert not state.follower_fetch(1, 10, 10, 1)
    assert state.follower_fetch(2, 8, 10, 1)
    assert state.high_watermark == 8


def test_a_single_replica_isr_follows_the_leader_offset() -> None:
    state = LeaderState(
        0,
        [0],
        [0],
        leader_epoch=0,
        epoch_start_offset=0,
        high_watermark=0,
        leader_offset=7,
        now_ms=0,
        lag_max_ms=LAG_MAX,
    )
    assert state.high_watermark == 7
    assert state.leader_progress(9) and state.high_watermark == 9
