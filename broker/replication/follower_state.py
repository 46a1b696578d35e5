"""One followed partition's state (sans-IO): whom it follows and what it does next.

A follower of (leader, leader epoch) first *truncates* — asks the leader where
its latest epoch ends and cuts its log there, possibly in several rounds — and
then *fetches*. Errors move it on as follows (the trio shell,
broker.replication.fetcher, does the I/O and reports outcomes here):

- the leader does not lead (any more), does not know the partition, or follows
  another epoch: wait ``backoff`` and try again (the metadata normally brings a
  new leader or epoch first, which replaces this state altogether);
- the fetch offset is out of range: ask for the leader's log start (behind it:
  restart the log there; otherwise our log diverged: truncate again);
- the leader's batches do not fit our log end (they start below it): truncate
  again;
- anything else (a storage or protocol error at the leader, bad data): back off.

No clock is read: times are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from client.protocol import OffsetOutOfRangeError


class Phase(Enum):
    TRUNCATING = "truncating"
    FETCHING = "fetching"


class Next(Enum):
    """What the shell does after a failed fetch."""

    RETRY_LATER = "retry_later"
    FIND_LOG_START = "find_log_start"


@dataclass(eq=False, slots=True)
class FollowerState:
    leader: int
    leader_epoch: int
    generation: int
    phase: Phase = Phase.TRUNCATING
    retry_at: float = -math.inf
    # Appended to since the last background fsync.
    dirty: bool = field(default=False)

    def ready(self, now: float) -> bool:
        return self.retry_at <= now

    def back_off(self, now: float, backoff: float) -> None:
        self.retry_at = now + backoff

    def truncated(self, complete: bool) -> None:
        """One truncation round done; fetch once it is complete."""
        if complete:
            self.phase = Phase.FETCHING

    def fetch_failed(self, code: int, now: float, backoff: float) -> Next:
        """The leader answered ``code`` for this partition."""
        if code == OffsetOutOfRangeError.code:
            return Next.FIND_LOG_START
        self.back_off(now, backoff)
        return Next.RETRY_LATER

    def log_start_found(
        self, leader_start: int, local_end: int, now: float, backoff: float
    ) -> bool:
        """After an out-of-range fetch: True if our log must restart at ``leader_start``
        (we are behind the leader's retention); otherwise we diverged: truncate again."""
        if leader_start > local_end:
            return True
        self.phase = Phase.TRUNCATING
        self.back_off(now, backoff)
        return False

    def append_rejected(self) -> None:
        """The leader's batches do not continue our log: find the divergence again."""
        self.phase = Phase.TRUNCATING
