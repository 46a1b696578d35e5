"""The controller's replication decisions against a model cluster (hypothesis, stateful).

Brokers fail, restart and stop (controlled shutdown); leaders bring caught-up
followers back into the ISR (their own compare-and-set writes); preferred-leader
elections and reassignments run. After every event the controller's plan is
applied as the watches would apply it, and must reach a fixpoint in one round.

- every leader is alive and in its ISR, every ISR member alive; only clean
  elections (a new leader was in the ISR) and each leader change bumps the epoch;
- a stopping broker neither leads nor stays in an ISR while a healthy in-sync
  replica could replace it;
- a preferred election leaves each partition led by its preferred replica when
  that one is eligible;
- a reassignment to live brokers completes (as followers catch up) with the
  target as replica list, a leader from the target and an ISR within it.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from broker.controller_plan import (
    Preferred,
    StateWrite,
    all_partitions,
    plan_preferred,
    plan_states,
    preferred_status,
)
from broker.metadata_cache import MetadataCache
from broker.placement import assign_replicas
from broker.replication.reassignment import Step, plan_reassignment
from broker.znodes import NO_LEADER, BrokerRegistration, PartitionStateData, TopicAssignment
from tests.controller_writes import apply_state_writes

BROKERS = [0, 1, 2, 3]


class ClusterModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cache = MetadataCache()
        self.zxid = 0
        self.topics = 0
        self.stopping: set[int] = set()
        self.reassigning: dict[tuple[str, int], list[int]] = {}
        for b in BROKERS[:3]:
            self._register(b)
        self._settle()

    def _next(self) -> int:
        self.zxid += 1
        return self.zxid

    def _register(self, broker: int) -> None:
        self.cache.set_broker(broker, BrokerRegistration("h", 9000 + broker), self._next())

    def _apply(self, writes: list[StateWrite]) -> None:
        apply_state_writes(self.cache, writes, self._next)

    def _settle(self) -> None:
        self._apply(plan_states(self.cache, 1, self.cache.topics, None, self.stopping))
        again = plan_states(self.cache, 1, self.cache.topics, None, self.stopping)
        assert again == [], "no fixpoint in one round"

    # ------------------------------------------------------------ events

    @rule(partitions=st.integers(1, 3), factor=st.integers(1, 3), start=st.integers(0, 9))
    def create_topic(self, partitions: int, factor: int, start: int) -> None:
        live = {b: "" for b in self.cache.brokers}
        if factor > len(live):
            return
        name = f"t{self.topics}"
        self.topics += 1
        assignment = assign_replicas(partitions, factor, live, start, start * 7)
        self.cache.set_topic(name, TopicAssignment(name, assignment), 0)
        self._settle()

    @rule(broker=st.sampled_from(BROKERS))
    def fail(self, broker: int) -> None:
        self.cache.remove_broker(broker)
        self.stopping.discard(broker)  # its ephemeral shutdown request went with it
        self._settle()

    @rule(broker=st.sampled_from(BROKERS))
    def start_or_restart(self, broker: int) -> None:
        self.stopping.discard(broker)
        self._register(broker)
        self._settle()

    @precondition(lambda self: len(self.cache.brokers) > 0)
    @rule(data=st.data())
    def begin_controlled_shutdown(self, data: st.DataObject) -> None:
        self.stopping.add(data.draw(st.sampled_from(sorted(self.cache.brokers))))
        self._settle()

    @rule(data=st.data())
    def follower_catches_up(self, data: st.DataObject) -> None:
        """A leader adds a live, running replica back to its ISR (its own CAS write)."""
        candidates = []
        for name, topic in self.cache.topics.items():
            for p, info in topic.states.items():
                if info.leader == NO_LEADER:
                    continue
                for r in topic.replicas(p):
                    if r not in info.isr and r in self.cache.brokers and r not in self.stopping:
                        candidates.append((name, p, r))
        if not candidates:
            return
        name, p, r = data.draw(st.sampled_from(sorted(candidates)))
        info = self.cache.partition(name, p)
        assert info is not None
        state = PartitionStateData(info.leader, info.leader_epoch, [*info.isr, r], 1)
        self.cache.set_state(name, p, state, info.version + 1, self._next())
        self._settle()

    @rule()
    def preferred_election(self) -> None:
        wanted = [tp for tp in all_partitions(self.cache) if tp not in self.reassigning]
        self._apply(plan_preferred(self.cache, 1, wanted, self.stopping))
        self._settle()
        for name, p in wanted:
            status = preferred_status(self.cache, name, p, self.stopping)
            assert status is not Preferred.ELIGIBLE, f"{name}-{p} could still move"

    @rule(data=st.data())
    def request_reassignment(self, data: st.DataObject) -> None:
        partitions = [tp for tp in all_partitions(self.cache) if tp not in self.reassigning]
        live = sorted(self.cache.brokers)
        if not partitions or not live:
            return
        tp = data.draw(st.sampled_from(partitions))
        target = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=3, unique=True))
        self.reassigning[tp] = target

    @precondition(lambda self: bool(self.reassigning))
    @rule(data=st.data())
    def reassignment_step(self, data: st.DataObject) -> None:
        tp = data.draw(st.sampled_from(sorted(self.reassigning)))
        target = self.reassigning[tp]
        topic = self.cache.topic(tp[0])
        assert topic is not None
        info = topic.states.get(tp[1])
        step = plan_reassignment(
            topic.replicas(tp[1]),
            target,
            None if info is None else info.state,
            self.cache.live_brokers(),
            1,
        )
        if step.step is Step.DONE:
            assert topic.replicas(tp[1]) == target
            del self.reassigning[tp]
            return
        if step.step is Step.WAIT:
            return
        partitions = dict(topic.assignment.partitions)
        partitions[tp[1]] = step.replicas
        self.cache.set_topic(tp[0], TopicAssignment(tp[0], partitions), topic.version + 1)
        if step.step is Step.FINISH:
            assert set(step.replicas) == set(target)
            if step.state is not None and info is not None:
                assert step.state.leader in target and set(step.state.isr) <= set(target)
                assert step.state.leader in info.isr
                self.cache.set_state(tp[0], tp[1], step.state, info.version + 1, self._next())
        self._settle()

    # ------------------------------------------------------------ invariants

    @invariant()
    def leaders_alive_in_sync_and_not_stopping_when_avoidable(self) -> None:
        live = self.cache.live_brokers()
        for topic in self.cache.topics.values():
            for p, replicas in topic.assignment.partitions.items():
                info = topic.states.get(p)
                if info is None:
                    assert not any(r in live for r in replicas)
                    continue
                if info.leader == NO_LEADER:
                    assert not any(r in live for r in info.isr)
                    continue
                assert info.leader in live and info.leader in info.isr
                assert all(r in live for r in info.isr)
                healthy = [
                    r
                    for r in info.isr
                    if r != info.leader
                    and r not in self.stopping
                    and self.cache.brokers[r].czxid < info.mzxid
                ]
                if info.leader in self.stopping:
                    assert not healthy, "a stopping broker kept a leadership another could take"
                for r in info.isr:
                    if r != info.leader:
                        assert r not in self.stopping, "a stopping follower stayed in the ISR"


TestClusterModel = ClusterModel.TestCase
TestClusterModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
