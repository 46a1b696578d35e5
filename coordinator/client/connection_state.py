"""Sans-IO connection-state and heartbeat logic of the coordinator client.

The trio shell feeds events in (connected, disconnected, session expired, a
clock tick with ``now``) and gets decisions back (state changes to announce,
when to give up on the session, when to ping). Nothing here reads a clock.
"""

from __future__ import annotations

from enum import Enum


class ConnectionState(Enum):
    """Curator's connection states, as seen by listeners."""

    CONNECTED = "CONNECTED"
    """A new session was established (first connect, or after LOST)."""
    SUSPENDED = "SUSPENDED"
    """The connection dropped; the session may still be alive on the server."""
    RECONNECTED = "RECONNECTED"
    """The connection came back within the session timeout; the session survived."""
    LOST = "LOST"
    """The session is gone (expired, given up on, or closed): ephemerals are lost."""


class ConnectionStateMachine:
    """Tracks the session and the state listeners see.

    Invariants: LOST means there is no session; SUSPENDED always follows
    CONNECTED or RECONNECTED; RECONNECTED only resumes the session that was
    suspended; a suspended session is given up (LOST) once the session timeout
    has passed on the client's clock without a reconnect.
    """

    def __init__(self) -> None:
        self.state = ConnectionState.LOST
        self.session_id = 0
        self.timeout = 0.0
        self.suspended_at: float | None = None
        self.closed = False

    @property
    def has_session(self) -> bool:
        """Whether there is a session to resume (CONNECTED, RECONNECTED or SUSPENDED)."""
        return self.state is not ConnectionState.LOST

    @property
    def is_connected(self) -> bool:
        """Whether the session has a live connection (CONNECTED or RECONNECTED)."""
        return self.state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED)

    @property
    def give_up_at(self) -> float | None:
        """While SUSPENDED: the time at which the session is declared LOST."""
        if self.state is ConnectionState.SUSPENDED and self.suspended_at is not None:
            return self.suspended_at + self.timeout
        return None

    def connected(self, now: float, session_id: int, timeout: float) -> list[ConnectionState]:
        """A CONNECT was answered with ``session_id`` and the negotiated ``timeout``."""
        if self.closed:
            raise ValueError("the client is closed")
        if self.is_connected:
            raise ValueError("connected while already connected")
        if timeout <= 0:
            raise ValueError("the negotiated session timeout must be positive")
        changes: list[ConnectionState] = []
        resumed = self.state is ConnectionState.SUSPENDED and session_id == self.session_id
        if self.state is ConnectionState.SUSPENDED and not resumed:
            # The server gave us another session: the old one is gone.
            changes.append(ConnectionState.LOST)
        self.state = ConnectionState.RECONNECTED if resumed else ConnectionState.CONNECTED
        changes.append(self.state)
        self.session_id = session_id
        self.timeout = timeout
        self.suspended_at = None
        return changes

    def disconnected(self, now: float) -> list[ConnectionState]:
        """The connection dropped (or a connect attempt failed)."""
        if not self.is_connected:
            return []
        self.state = ConnectionState.SUSPENDED
        self.suspended_at = now
        return [self.state]

    def session_expired(self, now: float) -> list[ConnectionState]:
        """The server said the session expired (or refused to resume it)."""
        return self._lose()

    def tick(self, now: float) -> list[ConnectionState]:
        """Time passed: give the session up if it stayed suspended too long."""
        give_up_at = self.give_up_at
        if give_up_at is not None and now >= give_up_at:
            return self._lose()
        return []

    def close(self) -> list[ConnectionState]:
        """The client ends its session; no further connects are allowed."""
        self.closed = True
        return self._lose()

    def reopen(self) -> None:
        """Allow connecting again after ``close`` (a stopped client restarted)."""
        self.closed = False

    def _lose(self) -> list[ConnectionState]:
        if self.state is ConnectionState.LOST:
            return []
        self.state = ConnectionState.LOST
        self.session_id = 0
        self.suspended_at = None
        return [ConnectionState.LOST]


class Heartbeat:
    """When to ping and when a silent server counts as gone.

    ZooKeeper's rule: ping after ``timeout / 3`` without sending anything; the
    connection is dead after ``2 * timeout / 3`` without hearing anything.
    """

    def __init__(self, timeout: float, now: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.ping_interval = timeout / 3
        self.read_timeout = timeout * 2 / 3
        self.last_sent = now
        self.last_heard = now

    def sent(self, now: float) -> None:
        """A request went out."""
        self.last_sent = max(self.last_sent, now)

    def heard(self, now: float) -> None:
        """A response or push came in."""
        self.last_heard = max(self.last_heard, now)

    def ping_due(self, now: float) -> bool:
        """Whether nothing was sent for a third of the timeout."""
        # Same arithmetic as next_wakeup, so waking then always finds work.
        return now >= self.last_sent + self.ping_interval

    def silent(self, now: float) -> bool:
        """Whether the server has been quiet for too long."""
        return now >= self.last_heard + self.read_timeout

    def next_wakeup(self) -> float:
        """The next time at which ``ping_due`` or ``silent`` may change."""
        return min(self.last_sent + self.ping_interval, self.last_heard + self.read_timeout)
