"""Session liveness: clamping, touching, bucketed expiry (clock passed in)."""

from __future__ import annotations

import pytest

from coordinator.errors import BadArgumentsError
from coordinator.sessions import SessionLimits, SessionTracker


def test_clamp() -> None:
    limits = SessionLimits(2000, 60000)
    assert limits.clamp(0) == 2000
    assert limits.clamp(1999) == 2000
    assert limits.clamp(5000) == 5000
    assert limits.clamp(10**9) == 60000
    with pytest.raises(BadArgumentsError):
        limits.clamp(-1)
    with pytest.raises(ValueError):
        SessionLimits(10, 5)


def test_expires_after_timeout_not_before() -> None:
    t = SessionTracker(interval_ms=100)
    t.add(1, 2000, now_ms=1000)
    deadline = t.deadline(1)
    assert deadline is not None and deadline >= 3000
    assert t.expire(2999) == []
    assert t.expire(deadline - 1) == []
    assert t.expire(deadline) == [1]
    assert 1 not in t and len(t) == 0
    assert t.expire(10**9) == []


def test_touch_pushes_deadline_out() -> None:
    t = SessionTracker(interval_ms=100)
    t.add(1, 1000, now_ms=0)
    t.add(2, 1000, now_ms=0)
    expired: list[tuple[int, list[int]]] = []
    for now in range(0, 5000, 300):
        assert t.touch(1, now)
        got = t.expire(now)
        if got:
            expired.append((now, got))
    assert expired == [(1200, [2])]
    assert 1 in t
    assert not t.touch(2, 5000)
    assert t.expire(6000) == [1]


def test_remove_and_unknown() -> None:
    t = SessionTracker(interval_ms=50)
    t.add(7, 500, now_ms=0)
    t.remove(7)
    t.remove(7)
    assert t.expire(10**6) == []
    assert not t.touch(7, 0)
    with pytest.raises(ValueError):
        SessionTracker(interval_ms=0)


def test_many_sessions_expire_in_order_of_deadline() -> None:
    t = SessionTracker(interval_ms=10)
    for sid in range(1, 101):
        t.add(sid, 100 * sid, now_ms=0)
    expired: list[int] = []
    for now in range(0, 11_000, 250):
        got = t.expire(now)
        assert got == sorted(got)
        expired.extend(got)
    assert expired == list(range(1, 101))


def test_recovered_sessions_get_a_fresh_timeout() -> None:
    # After a restart the server re-adds every logged session from "now".
    t = SessionTracker(interval_ms=100)
    restart = 1_000_000
    t.add(5, 3000, now_ms=restart)
    assert t.expire(restart + 2999) == []
    assert t.expire(restart + 3100) == [5]
