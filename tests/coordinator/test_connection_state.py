"""The sans-IO connection-state machine and heartbeat, checked against a small model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.client.connection_state import (
    ConnectionState,
    ConnectionStateMachine,
    Heartbeat,
)

C = ConnectionState


class ConnectionStateModel(RuleBasedStateMachine):
    """The model: a session id (or None), whether connected, when suspended."""

    def __init__(self) -> None:
        super().__init__()
        self.sm = ConnectionStateMachine()
        self.now = 0.0
        self.session: int | None = None
        self.connected = False
        self.suspended_at: float | None = None
        self.timeout = 1.0
        self.closed = False
        self.next_id = 1
        self.log: list[ConnectionState] = []

    def _record(self, changes: list[ConnectionState], expected: list[ConnectionState]) -> None:
        assert changes == expected
        self.log.extend(changes)

    def _lose(self) -> list[ConnectionState]:
        had = self.session is not None
        self.session = None
        self.connected = False
        self.suspended_at = None
        return [C.LOST] if had else []

    @rule(dt=st.floats(min_value=0, max_value=2, allow_nan=False))
    def advance(self, dt: float) -> None:
        self.now += dt
        expected: list[ConnectionState] = []
        if self.suspended_at is not None and self.now >= self.suspended_at + self.timeout:
            expected = self._lose()
        self._record(self.sm.tick(self.now), expected)

    @precondition(lambda self: not self.connected and not self.closed)
    @rule(timeout=st.floats(min_value=0.1, max_value=3))
    def connect_same_or_first(self, timeout: float) -> None:
        """The server resumes our session (or opens the first one)."""
        if self.session is None:
            self.session = self.next_id
            self.next_id += 1
            expected = [C.CONNECTED]
        else:
            expected = [C.RECONNECTED]
        self.connected = True
        self.suspended_at = None
        self.timeout = timeout
        self._record(self.sm.connected(self.now, self.session, timeout), expected)

    @precondition(lambda self: not self.connected and not self.closed)
    @rule(timeout=st.floats(min_value=0.1, max_value=3))
    def connect_other_session(self, timeout: float) -> None:
        """The server answers with a session id we did not ask for."""
        expected = [*self._lose(), C.CONNECTED]
        self.session = self.next_id
        self.next_id += 1
        self.connected = True
        self.timeout = timeout
        self._record(self.sm.connected(self.now, self.session, timeout), expected)

    @rule()
    def disconnect(self) -> None:
        expected: list[ConnectionState] = []
        if self.connected:
            self.connected = False
            self.suspended_at = self.now
            expected = [C.SUSPENDED]
        self._record(self.sm.disconnected(self.now), expected)

    @rule()
    def expire(self) -> None:
        self._record(self.sm.session_expired(self.now), self._lose())

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.closed = True
        self._record(self.sm.close(), self._lose())

    @precondition(lambda self: self.closed)
    @rule()
    def reopen(self) -> None:
        self.closed = False
        self.sm.reopen()

    @invariant()
    def matches_model(self) -> None:
        assert self.sm.has_session == (self.session is not None)
        assert self.sm.is_connected == self.connected
        assert self.sm.session_id == (self.session or 0)
        if self.suspended_at is None:
            assert self.sm.give_up_at is None
        else:
            assert self.sm.give_up_at == self.suspended_at + self.timeout

    @invariant()
    def transitions_are_curators(self) -> None:
        for before, after in zip(self.log, self.log[1:], strict=False):
            if after is C.RECONNECTED:
                assert before is C.SUSPENDED
            if after is C.SUSPENDED:
                assert before in (C.CONNECTED, C.RECONNECTED)
            assert before != after  # every announcement is a change


TestConnectionStateModel = ConnectionStateModel.TestCase
TestConnectionStateModel.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)


def test_initial_state_is_lost_without_session() -> None:
    sm = ConnectionStateMachine()
    assert sm.state is C.LOST
    assert not sm.has_session
    assert sm.disconnected(0.0) == []
    assert sm.tick(100.0) == []


def test_suspended_session_is_lost_after_the_timeout() -> None:
    sm = ConnectionStateMachine()
    assert sm.connected(0.0, 7, 2.0) == [C.CONNECTED]
    assert sm.disconnected(1.0) == [C.SUSPENDED]
    assert sm.give_up_at == 3.0
    assert sm.tick(2.9) == []
    assert sm.tick(3.0) == [C.LOST]
    assert sm.session_id == 0
    assert sm.connected(3.5, 8, 2.0) == [C.CONNECTED]


def test_connect_while_connected_or_closed_is_refused() -> None:
    sm = ConnectionStateMachine()
    sm.connected(0.0, 1, 1.0)
    with pytest.raises(ValueError):
        sm.connected(0.0, 1, 1.0)
    sm.close()
    with pytest.raises(ValueError):
        sm.connected(0.0, 2, 1.0)


def test_heartbeat_pings_after_a_third_and_gives_up_after_two_thirds() -> None:
    hb = Heartbeat(3.0, now=0.0)
    assert not hb.ping_due(0.9)
    assert hb.ping_due(1.0)
    assert hb.next_wakeup() == 1.0
    hb.sent(1.0)
    assert not hb.silent(1.9)
    assert hb.silent(2.0)
    hb.heard(1.5)
    assert not hb.silent(2.0)
    assert hb.next_wakeup() == 2.0


@given(events=st.lists(st.tuples(st.booleans(), st.floats(0, 10)), max_size=30))
def test_heartbeat_wakeup_is_never_later_than_a_due_action(
    events: list[tuple[bool, float]],
) -> None:
    hb = Heartbeat(1.5, now=0.0)
    now = 0.0
    for is_send, dt in events:
        now += dt
        if is_send:
            hb.sent(now)
        else:
            hb.heard(now)
    wake = hb.next_wakeup()
    assert hb.ping_due(wake) or hb.silent(wake)
    assert not (hb.ping_due(now) or hb.silent(now)) or wake <= now
