"""Truncation by leader epoch (KIP-101/279) against a small replicated-log model.

Three replicas hold logs of records tagged with the leader epoch they were
written in. Leaders change (cleanly: only an ISR member is elected), append,
followers replicate, and the high watermark — the committed prefix — advances
to the smallest log end of the ISR. Whenever a replica starts following a new
leader it runs the real truncation decision (``broker.replication.epochs``)
against the leader's answer, round after round, before fetching. Invariants:

- a committed record is never truncated, and every leader holds the committed
  prefix;
- after truncation a follower's log is a prefix of its leader's log (so the
  logs never diverge below what a follower fetches).
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.replication.epochs import (
    UNDEFINED_EPOCH,
    UNDEFINED_OFFSET,
    leader_end_offset,
    truncation,
)

REPLICAS = (0, 1, 2)


def epoch_cache(log: list[int]) -> list[tuple[int, int]]:
    """(epoch, start offset) of each epoch present in ``log`` (as the log keeps them)."""
    out: list[tuple[int, int]] = []
    for offset, epoch in enumerate(log):
        if not out or epoch > out[-1][0]:
            out.append((epoch, offset))
    return out


def end_for(entries: list[tuple[int, int]], requested: int, end: int) -> tuple[int, int]:
    """The log's own OffsetForLeaderEpoch (LeaderEpochCache.end_offset_for_epoch)."""
    if requested == UNDEFINED_EPOCH or not entries:
        return UNDEFINED_EPOCH, UNDEFINED_OFFSET
    epochs = [e for e, _ in entries]
    if requested == epochs[-1]:
        return requested, end
    later = [i for i, e in enumerate(epochs) if e > requested]
    if not later:
        return UNDEFINED_EPOCH, UNDEFINED_OFFSET
    i = later[0]
    if i == 0:
        return requested, entries[0][1]
    return epochs[i - 1], entries[i][1]


def leader_answer(log: list[int], current_epoch: int, requested: int) -> tuple[int, int]:
    entries = epoch_cache(log)
    latest = entries[-1][0] if entries else UNDEFINED_EPOCH
    return leader_end_offset(
        requested, current_epoch, end_for(entries, requested, len(log)), latest, len(log)
    )


def virtual_answer(log: list[int], current_epoch: int, requested: int) -> tuple[int, int]:
    """Reference: the cache with the current epoch written at the log end (Kafka)."""
    entries = epoch_cache(log)
    if not entries or entries[-1][0] < current_epoch:
        entries.append((current_epoch, len(log)))
    return end_for(entries, requested, len(log))


class ReplicatedLog(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[int, list[int]] = {r: [] for r in REPLICAS}
        self.leader = 0
        self.epoch = 0
        self.isr = set(REPLICAS)
        self.hw = 0
        self.committed: list[int] = []
        # Followers that truncated against the current leader and may fetch.
        self.synced: set[int] = set()

    @rule(n=st.integers(1, 4))
    def append(self, n: int) -> None:
        self.logs[self.leader].extend([self.epoch] * n)

    @precondition(lambda self: len(self.synced) > 0)
    @rule(data=st.data())
    def replicate(self, data: st.DataObject) -> None:
        follower = data.draw(st.sampled_from(sorted(self.synced)))
        log, source = self.logs[follower], self.logs[self.leader]
        assert source[: len(log)] == log, "a synced follower diverged from its leader"
        upto = data.draw(st.integers(len(log), len(source)))
        log.extend(source[len(log) : upto])

    @rule()
    def advance_high_watermark(self) -> None:
        members = [r for r in self.isr if r == self.leader or r in self.synced]
        if set(members) != self.isr:
            return  # an ISR member has not fetched from this leader yet
        new = min(len(self.logs[r]) for r in self.isr)
        if new > self.hw:
            self.hw = new
            self.committed = list(self.logs[self.leader][:new])

    @rule(data=st.data())
    def change_isr(self, data: st.DataObject) -> None:
        follower = data.draw(st.sampled_from([r for r in REPLICAS if r != self.leader]))
        if follower in self.isr:
            self.isr.discard(follower)  # it lagged
        elif follower in self.synced and len(self.logs[follower]) >= self.hw:
            self.isr.add(follower)  # it caught up

    @rule(data=st.data())
    def elect(self, data: st.DataObject) -> None:
        self.leader = data.draw(st.sampled_from(sorted(self.isr)))
        self.epoch += 1
        self.synced = set()

    @precondition(lambda self: len(self.synced) < len(REPLICAS) - 1)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        pending = [r for r in REPLICAS if r != self.leader and r not in self.synced]
        follower = data.draw(st.sampled_from(pending))
        log = self.logs[follower]
        leader_log = self.logs[self.leader]
        common = 0
        while common < min(len(log), len(leader_log)) and log[common] == leader_log[common]:
            common += 1
        for _ in range(10):
            entries = epoch_cache(log)
            requested = entries[-1][0] if entries else UNDEFINED_EPOCH
            answer = leader_answer(leader_log, self.epoch, requested)
            end = len(log)

            def local(
                epoch: int, entries: list[tuple[int, int]] = entries, end: int = end
            ) -> tuple[int, int]:
                return end_for(entries, epoch, end)

            decision = truncation(0, end, requested, answer, local)
            assert decision.offset >= common, "truncated more than the divergent tail"
            del log[decision.offset :]
            if decision.complete:
                break
        else:
            raise AssertionError("truncation did not converge")
        assert leader_log[: len(log)] == log, "diverged after truncation"
        self.synced.add(follower)

    @invariant()
    def committed_records_survive(self) -> None:
        leader_log = self.logs[self.leader]
        assert leader_log[: len(self.committed)] == self.committed
        for r in self.isr:
            if r == self.leader or r in self.synced:
                assert (
                    self.logs[r][: min(len(self.logs[r]), self.hw)]
                    == self.committed[: min(len(self.logs[r]), self.hw)]
                )


TestReplicatedLog = ReplicatedLog.TestCase
TestReplicatedLog.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


def test_leader_answer_matches_a_cache_with_the_current_epoch_written() -> None:
    logs = [[], [0, 0, 1, 1, 1, 3], [2, 2], [0, 4, 4]]
    for log in logs:
        for current in range(0, 7):
            if log and max(log) > current:
                continue
            for requested in range(-1, current + 2):
                assert leader_answer(log, current, requested) == virtual_answer(
                    log, current, requested
                ), (log, current, requested)


def test_follower_without_the_leaders_epoch_goes_another_round() -> None:
    # Follower: epoch 0 at 0..5, epoch 2 at 5..10. Leader answered (1, 12).
    entries = [(0, 0), (2, 5)]
    first = truncation(0, 10, 2, (1, 12), lambda e: end_for(entries, e, 10))
    assert first.offset == 5 and not first.complete
    second = truncation(0, 5, 0, (0, 5), lambda e: end_for([(0, 0)], e, 5))
    assert second.offset == 5 and second.complete


def test_no_epoch_information_refetches_everything() -> None:
    decision = truncation(
        3, 9, UNDEFINED_EPOCH, (UNDEFINED_EPOCH, UNDEFINED_OFFSET), lambda e: (-1, -1)
    )
    assert decision.offset == 3 and decision.complete
