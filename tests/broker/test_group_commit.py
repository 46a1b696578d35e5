"""Group commit bookkeeping against a model: a waiter is released only by a flush that
began after it started waiting, and by the first such flush to finish."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.group_commit import GroupCommit


class GroupCommitMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core: GroupCommit[str, int] = GroupCommit()
        self.dirty: set[str] = set()
        self.waiting: list[int] = []  # waiters not yet covered by a started flush
        self.covered: list[int] = []  # waiters the running flush will release
        self.running = False
        self.next_token = 0
        self.flushed: list[str] | None = None

    @rule(partition=st.sampled_from(["a", "b", "c"]))
    def append(self, partition: str) -> None:
        self.core.mark_dirty(partition)
        self.dirty.add(partition)

    @rule()
    def wait(self) -> None:
        self.core.wait(self.next_token)
        self.waiting.append(self.next_token)
        self.next_token += 1

    @rule(partition=st.sampled_from(["a", "b", "c"]))
    def forget(self, partition: str) -> None:
        self.core.forget(partition)
        self.dirty.discard(partition)

    @rule()
    def begin(self) -> None:
        batch = self.core.begin()
        if self.running or (not self.dirty and not self.waiting):
            assert batch is None
            return
        assert batch is not None
        assert set(batch) == self.dirty
        self.dirty.clear()
        self.covered, self.waiting = self.waiting, []
        self.running = True

    @precondition(lambda self: self.running)
    @rule()
    def finish(self) -> None:
        assert self.core.finish() == self.covered
        self.covered = []
        self.running = False

    @invariant()
    def agrees(self) -> None:
        assert self.core.busy == self.running
        assert self.core.waiting == len(self.waiting) + len(self.covered)
        assert self.core.pending == (bool(self.dirty) or bool(self.waiting))


TestGroupCommit = GroupCommitMachine.TestCase
TestGroupCommit.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_finish_without_a_flush_is_an_error() -> None:
    with pytest.raises(ValueError):
        GroupCommit[str, int]().finish()
