"""The controller's election rules, driven by brokers failing and restarting (stateful).

After every event the plan is applied to the cache (as the watches would) and must
reach a fixpoint in one round; elected leaders are always alive and in-sync, every
leader change bumps the leader epoch, and a partition is leaderless only when none
of its in-sync replicas is alive.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from broker.controller_plan import plan_states
from broker.metadata_cache import MetadataCache
from broker.placement import assign_replicas
from broker.znodes import NO_LEADER, BrokerRegistration, TopicAssignment
from tests.controller_writes import apply_state_writes

BROKERS = [0, 1, 2, 3]


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache = MetadataCache()
        self.zxid = 0
        self.topics = 0
        self.epochs: dict[tuple[str, int], int] = {}
        self.leaders: dict[tuple[str, int], int] = {}
        for b in BROKERS[:3]:
            self._register(b)
        self._settle()

    def _next(self) -> int:
        self.zxid += 1
        return self.zxid

    def _register(self, broker: int) -> None:
        self.cache.set_broker(broker, BrokerRegistration("h", 9000 + broker), self._next())

    def _settle(self) -> None:
        writes = plan_states(self.cache, 1, self.cache.topics)
        apply_state_writes(self.cache, writes, self._next)
        for w in writes:
            self.epochs[(w.topic, w.partition)] = w.state.leader_epoch
            self.leaders[(w.topic, w.partition)] = w.state.leader
        assert plan_states(self.cache, 1, self.cache.topics) == [], "no fixpoint in one round"

    @rule(partitions=st.integers(1, 4), factor=st.integers(1, 3), start=st.integers(0, 9))
    def create_topic(self, partitions: int, factor: int, start: int) -> None:
        live = {b: "" for b in self.cache.brokers}
        if factor > len(live):
            return
        name = f"t{self.topics}"
        self.topics += 1
        assignment = assign_replicas(partitions, factor, live, start, start * 7)
        self.cache.set_topic(name, TopicAssignment(name, assignment), 0)
        for p in assignment:
            self.epochs[(name, p)] = -1
        self._settle()

    @rule(broker=st.sampled_from(BROKERS))
    def fail(self, broker: int) -> None:
        self.cache.remove_broker(broker)
        self._settle()

    @rule(broker=st.sampled_from(BROKERS))
    def start_or_restart(self, broker: int) -> None:
        before = {
            key: info.leader_epoch
            for key in self.epochs
            if (info := self.cache.partition(*key)) is not None and info.leader == broker
        }
        self._register(broker)
        self._settle()
        for key, epoch in before.items():
            info = self.cache.partition(*key)
            assert info is not None and info.leader_epoch > epoch, "restart kept the old epoch"

    @invariant()
    def leaders_are_alive_and_in_sync(self) -> None:
        live = self.cache.live_brokers()
        for topic in self.cache.topics.values():
            for p, replicas in topic.assignment.partitions.items():
                info = topic.states.get(p)
                if info is None:
                    assert not any(r in live for r in replicas)
                    continue
                assert set(info.isr) <= set(replicas)
                if info.leader == NO_LEADER:
                    assert not any(r in live for r in info.isr)
                else:
                    assert info.leader in live
                    assert info.leader in info.isr
                    assert all(r in live for r in info.isr)


TestController = ControllerMachine.TestCase
TestController.settings = settings(max_examples=120, stateful_step_count=30, deadline=None)
