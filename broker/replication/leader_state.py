"""A partition leader's view of its followers (sans-IO): ISR and high watermark.

The leader learns each follower's log end offset from the offset of its FETCH
(the follower asks for what it does not have yet), and its own contribution from
the flush policy: under ``group_commit`` the offset up to which its log is
fsynced, under ``interval`` its log end. The high watermark is the smallest of
these over the ISR and never decreases.

ISR changes are proposed here and carried out by the caller (a compare-and-set
of the partition state znode, see broker.replication.isr_writer). Until a
change is committed, the high watermark is computed over the *maximal* ISR —
the committed one plus any member being added — so that every replica of the
committed ISR (the one a new leader is elected from) always holds everything
below the high watermark (Kafka's KIP-497 rule):

- a follower *joins* when it has fetched up to the high watermark and past the
  start of the current leader epoch (so it has truncated its divergent tail);
- a member *leaves* when it has not been caught up with the leader's log end
  for ``lag_max_ms``. Caught up follows Kafka: a fetch at the leader's log end
  counts as caught up now; a fetch at the log end the leader had at the
  previous fetch counts as caught up at that previous fetch.

Follower offsets start unknown when a broker becomes leader, so the high
watermark only moves once every ISR member has fetched from the new leader.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN = -1


@dataclass(slots=True)
class FollowerProgress:
    """What the leader knows about one follower."""

    log_end_offset: int = UNKNOWN
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    leader_end_at_last_fetch: int = UNKNOWN


class LeaderState:
    """Replication state of one partition while this broker leads it."""

    def __init__(
        self,
        me: int,
        replicas: list[int],
        isr: list[int],
        *,
        leader_epoch: int,
        epoch_start_offset: int,
        high_watermark: int,
        leader_offset: int,
        now_ms: int,
        lag_max_ms: int,
    ) -> None:
        self.me = me
        self.replicas = list(replicas)
        self.leader_epoch = leader_epoch
        self.epoch_start_offset = epoch_start_offset
        self.high_watermark = high_watermark
        self.leader_offset = leader_offset
        self.lag_max_ms = lag_max_ms
        self.isr: list[int] = self._ordered(set(isr) | {me})
        # A proposed ISR written but not yet acknowledged by the coordinator.
        self.pending: list[int] | None = None
        self.followers: dict[int, FollowerProgress] = {
            r: FollowerProgress(last_caught_up_ms=now_ms, last_fetch_ms=now_ms)
            for r in self.replicas
            if r != me
        }
        self._recompute()

    # ------------------------------------------------------------ views

    def _ordered(self, members: set[int]) -> list[int]:
        """Members in assignment order (then any others, sorted)."""
        ordered = [r for r in self.replicas if r in members]
        ordered.extend(sorted(members - set(ordered)))
        return ordered

    @property
    def maximal_isr(self) -> list[int]:
        """The committed ISR plus members being added: what the high watermark waits for."""
        if self.pending is None:
            return self.isr
        return self._ordered(set(self.isr) | set(self.pending))

    def follower_end(self, replica: int) -> int:
        progress = self.followers.get(replica)
        return UNKNOWN if progress is None else progress.log_end_offset

    # ------------------------------------------------------------ high watermark

    def _recompute(self) -> bool:
        """Move the high watermark up to what the maximal ISR holds; True if it moved."""
        candidate = self.leader_offset
        for r in self.maximal_isr:
            if r == self.me:
                continue
            end = self.follower_end(r)
            if end == UNKNOWN:
                return False
            candidate = min(candidate, end)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False

    def leader_progress(self, offset: int) -> bool:
        """The leader's own offset moved (fsynced, or appended under ``interval``)."""
        if offset > self.leader_offset:
            self.leader_offset = offset
            return self._recompute()
        return False

    def follower_fetch(self, replica: int, fetch_offset: int, leader_end: int, now_ms: int) -> bool:
        """A FETCH from ``replica`` at ``fetch_offset`` while the leader's log ends at
        ``leader_end``; True if the high watermark moved."""
        progress = self.followers.get(replica)
        if progress is None:
            progress = self.followers[replica] = FollowerProgress(
                last_caught_up_ms=now_ms, last_fetch_ms=now_ms
            )
        if fetch_offset >= leader_end:
            progress.last_caught_up_ms = max(progress.last_caught_up_ms, now_ms)
        elif fetch_offset >= progress.leader_end_at_last_fetch >= 0:
            progress.last_caught_up_ms = max(progress.last_caught_up_ms, progress.last_fetch_ms)
        progress.leader_end_at_last_fetch = leader_end
        progress.last_fetch_ms = now_ms
        progress.log_end_offset = fetch_offset
        return self._recompute()

    # ------------------------------------------------------------ ISR changes

    def caught_up(self, replica: int) -> bool:
        """Whether ``replica`` may join the ISR now."""
        end = self.follower_end(replica)
        return end != UNKNOWN and end >= self.high_watermark and end >= self.epoch_start_offset

    def propose_expand(self, eligible: set[int] | None = None) -> list[int] | None:
        """A larger ISR when a follower outside it has caught up (None otherwise).
        ``eligible`` limits who may join (e.g. not brokers shutting down)."""
        if self.pending is not None:
            return None
        joining = {
            r
            for r in self.followers
            if r not in self.isr
            and r in self.replicas
            and self.caught_up(r)
            and (eligible is None or r in eligible)
        }
        if not joining:
            return None
        return self._ordered(set(self.isr) | joining)

    def propose_shrink(self, now_ms: int) -> list[int] | None:
        """A smaller ISR without the members that lag (None if none does)."""
        if self.pending is not None:
            return None
        lagging = {
            r
            for r in self.isr
            if r != self.me
            and now_ms - self.followers.get(r, FollowerProgress()).last_caught_up_ms
            > self.lag_max_ms
        }
        if not lagging:
            return None
        return self._ordered(set(self.isr) - lagging)

    def begin_change(self, new_isr: list[int]) -> None:
        """The caller is writing ``new_isr``; until it lands the maximal ISR counts."""
        if self.pending is not None:
            raise ValueError("an ISR change is already in flight")
        if self.me not in new_isr:
            raise ValueError("the leader must stay in its ISR")
        self.pending = self._ordered(set(new_isr))
        self._recompute()

    def change_committed(self, new_isr: list[int]) -> bool:
        """The write landed; True if the high watermark moved."""
        self.pending = None
        self.isr = self._ordered(set(new_isr) | {self.me})
        return self._recompute()

    def change_failed(self) -> None:
        """The write was refused (the state changed under us): forget the proposal."""
        self.pending = None

    def isr_from_state(self, isr: list[int]) -> bool:
        """A newer version of the state znode shows ``isr`` (written by us or by the
        controller): a pending proposal either is that write or can no longer land.
        True if the high watermark moved."""
        self.pending = None
        self.isr = self._ordered(set(isr) | {self.me})
        return self._recompute()

    def set_replicas(self, replicas: list[int], now_ms: int) -> None:
        """The assignment changed (a reassignment): track new followers, drop old ones."""
        self.replicas = list(replicas)
        for r in replicas:
            if r != self.me and r not in self.followers:
                self.followers[r] = FollowerProgress(last_caught_up_ms=now_ms, last_fetch_ms=now_ms)
        for r in [r for r in self.followers if r not in replicas]:
            del self.followers[r]
