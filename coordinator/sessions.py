"""Session liveness (sans-IO): deadlines and expiry, with the clock passed in.

Which sessions exist (id, password, timeout) is committed state kept by the
state machine and logged; *when* a session dies is this tracker's job and is
never logged, as in ZooKeeper's SessionTrackerImpl. Deadlines live in buckets
of ``interval_ms`` (ZooKeeper's ExpiryQueue), so a touch is O(1) and usually
does nothing at all when the session's bucket has not moved.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.errors import BadArgumentsError


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds for the timeout a client may propose."""

    min_timeout_ms: int = 2000
    max_timeout_ms: int = 60000

    def __post_init__(self) -> None:
        if not 0 < self.min_timeout_ms <= self.max_timeout_ms:
            raise ValueError("need 0 < min_timeout_ms <= max_timeout_ms")

    def clamp(self, proposed_ms: int) -> int:
        """The timeout granted for a proposal (ZooKeeper clamps, it does not refuse)."""
        if proposed_ms < 0:
            raise BadArgumentsError(f"session timeout must not be negative: {proposed_ms}")
        return min(max(proposed_ms, self.min_timeout_ms), self.max_timeout_ms)


class SessionTracker:
    """Deadlines of live sessions; ``expire(now)`` returns those past theirs."""

    def __init__(self, interval_ms: int = 100) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.interval_ms = interval_ms
        self._timeout: dict[int, int] = {}
        self._bucket_of: dict[int, int] = {}
        self._buckets: dict[int, set[int]] = {}
        self._next_bucket: int | None = None

    def __len__(self) -> int:
        return len(self._timeout)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._timeout

    def _bucket_for(self, deadline_ms: int) -> int:
        # Round up, so a session never expires before its deadline.
        interval = self.interval_ms
        return (deadline_ms // interval + 1) * interval

    def add(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        """Track a session (new or recovered) with a deadline of ``now + timeout``."""
        self._timeout[session_id] = timeout_ms
        self._place(session_id, self._bucket_for(now_ms + timeout_ms))

    def touch(self, session_id: int, now_ms: int) -> bool:
        """Push the deadline out to ``now + timeout``; False if the session is unknown."""
        timeout = self._timeout.get(session_id)
        if timeout is None:
            return False
        bucket = self._bucket_for(now_ms + timeout)
        if self._bucket_of.get(session_id) != bucket:
            self._place(session_id, bucket)
        return True

    def _place(self, session_id: int, bucket: int) -> None:
        old = self._bucket_of.get(session_id)
        if old is not None:
            members = self._buckets[old]
            members.discard(session_id)
            if not members:
                del self._buckets[old]
        self._bucket_of[session_id] = bucket
        self._buckets.setdefault(bucket, set()).add(session_id)
        if self._next_bucket is None or bucket < self._next_bucket:
            self._next_bucket = bucket

    def remove(self, session_id: int) -> None:
        """Stop tracking (closed, or expired and handled)."""
        if self._timeout.pop(session_id, None) is None:
            return
        bucket = self._bucket_of.pop(session_id)
        members = self._buckets[bucket]
        members.discard(session_id)
        if not members:
            del self._buckets[bucket]

    def deadline(self, session_id: int) -> int | None:
        """The time (ms) after which the session counts as expired."""
        return self._bucket_of.get(session_id)

    def expire(self, now_ms: int) -> list[int]:
        """Remove and return (sorted) every session whose deadline is at or before ``now``."""
        if self._next_bucket is None or now_ms < self._next_bucket:
            return []
        due = sorted(b for b in self._buckets if b <= now_ms)
        out: list[int] = []
        for bucket in due:
            members = self._buckets.pop(bucket)
            for session_id in members:
                del self._bucket_of[session_id]
                del self._timeout[session_id]
            out.extend(members)
        self._next_bucket = min(self._buckets) if self._buckets else None
        out.sort()
        return out
