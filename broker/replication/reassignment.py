"""Moving a partition to a new set of replicas (sans-IO): the controller's next step.

Kafka's procedure, one step per call, each written by the controller (fenced by
its epoch) and confirmed by the watch before the next is planned:

1. **expand**: the assignment becomes target + the old replicas not in the
   target; the new replicas open their logs and follow the leader;
2. **wait** until every target replica is in the ISR (the leader adds each one
   as soon as it has caught up);
3. **finish**: in one transaction, the assignment becomes the target and the
   state keeps only target replicas in its ISR, with a new leader from the target
   if the current one is leaving (or has died) — the leader epoch goes up, which
   fences the replicas being removed; they then delete their logs;
4. **done**: the assignment is the target; the request is deleted.

A target naming a broker that is not registered waits (its replicas could not
follow); the admin api refuses such targets up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from broker.znodes import NO_LEADER, PartitionStateData


class Step(Enum):
    EXPAND = "expand"
    WAIT = "wait"
    FINISH = "finish"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ReassignmentStep:
    step: Step
    # EXPAND / FINISH: the partition's new replica list
    replicas: list[int]
    # FINISH: the new partition state (None when the partition has no state yet)
    state: PartitionStateData | None = None


def plan_reassignment(
    current: list[int],
    target: list[int],
    state: PartitionStateData | None,
    live: set[int],
    controller_epoch: int,
) -> ReassignmentStep:
    """The next step of moving a partition from ``current`` to ``target`` replicas."""
    if current == target:
        return ReassignmentStep(Step.DONE, list(target))
    if not set(target) <= set(current):
        expanded = list(target) + [r for r in current if r not in target]
        return ReassignmentStep(Step.EXPAND, expanded)
    if state is None:
        # No state yet (no replica was ever alive): nothing to move but the assignment.
        return ReassignmentStep(Step.FINISH, list(target))
    if not set(target) <= set(state.isr):
        return ReassignmentStep(Step.WAIT, list(current))
    leader = state.leader
    epoch = state.leader_epoch + 1
    if leader == NO_LEADER or leader not in target or leader not in live:
        candidates = [r for r in target if r in state.isr and r in live]
        if not candidates:
            return ReassignmentStep(Step.WAIT, list(current))
        leader = candidates[0]
    isr = [r for r in state.isr if r in target]
    if leader not in isr:
        isr.insert(0, leader)
    new_state = PartitionStateData(leader, epoch, isr, controller_epoch)
    return ReassignmentStep(Step.FINISH, list(target), new_state)


def validate_target(target: list[int], live: set[int]) -> str | None:
    """Why ``target`` cannot be a partition's replica list (None if it can)."""
    if not target:
        return "the replica list is empty"
    if len(set(target)) != len(target):
        return f"the replica list {target} repeats a broker"
    missing = sorted(set(target) - live)
    if missing:
        return f"broker(s) {missing} are not registered"
    return None
