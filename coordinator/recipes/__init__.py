"""Coordination recipes on the coordinator client (Apache Curator's and kazoo's).

Every recipe comes in a blocking form taking a ``CoordinatorClient`` first and
a trio form (``Async*``) taking an ``AsyncCoordinatorClient``; both run the
same sans-IO steps. See docs/recipes.md for each one's guarantees and failure
behaviour.

    from coordinator.recipes import Lock, Semaphore, LeaderElection

    with Lock(zk, "/locks/report"):
        ...
"""

from coordinator.recipes._nodes import Participant
from coordinator.recipes._watching import Observer
from coordinator.recipes.barrier import AsyncBarrier, AsyncDoubleBarrier, Barrier, DoubleBarrier
from coordinator.recipes.counter import AsyncCounter, Counter
from coordinator.recipes.election import AsyncLeaderElection, LeaderElection
from coordinator.recipes.errors import (
    AcquireCancelledError,
    CounterOutcomeUnknownError,
    LeadershipLostError,
    LeaseLostError,
    LockLostError,
    MaxLeasesMismatchError,
    MemberExistsError,
    NotHeldError,
    RecipeError,
    SemaphoreNotInitializedError,
)
from coordinator.recipes.group import AsyncGroupMembership, GroupMembership
from coordinator.recipes.holding import HoldState
from coordinator.recipes.lock import AsyncLock, Lock
from coordinator.recipes.queue import AsyncQueue, Queue
from coordinator.recipes.rwlock import (
    AsyncReadLock,
    AsyncReadWriteLock,
    AsyncWriteLock,
    ReadLock,
    ReadWriteLock,
    WriteLock,
)
from coordinator.recipes.semaphore import AsyncSemaphore, Semaphore

__all__ = [
    "AcquireCancelledError",
    "AsyncBarrier",
    "AsyncCounter",
    "AsyncDoubleBarrier",
    "AsyncGroupMembership",
    "AsyncLeaderElection",
    "AsyncLock",
    "AsyncQueue",
    "AsyncReadLock",
    "AsyncReadWriteLock",
    "AsyncSemaphore",
    "AsyncWriteLock",
    "Barrier",
    "Counter",
    "CounterOutcomeUnknownError",
    "DoubleBarrier",
    "GroupMembership",
    "HoldState",
    "LeaderElection",
    "LeadershipLostError",
    "LeaseLostError",
    "Lock",
    "LockLostError",
    "MaxLeasesMismatchError",
    "MemberExistsError",
    "NotHeldError",
    "Observer",
    "Participant",
    "Queue",
    "ReadLock",
    "ReadWriteLock",
    "RecipeError",
    "Semaphore",
    "SemaphoreNotInitializedError",
    "WriteLock",
]
