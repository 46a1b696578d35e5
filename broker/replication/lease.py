"""The leadership lease: a leader acknowledges writes only while its coordinator
session is certainly alive.

The coordinator expires a session ``session_timeout`` after it last heard from
the client, and only then can the controller elect another leader. So a request
*sent* at time t and answered proves the session alive until at least
t + session_timeout; the broker counts on a fraction of that (``LEASE_FRACTION``)
to leave room for clock drift. A broker that was paused (SIGSTOP, a long GC, a
frozen VM) therefore finds its lease expired the moment it runs again, before
it has read a single event, and acknowledges nothing until the coordinator
answers a request sent after the pause — by which time it has learned whether
it still leads. A disconnection (SUSPENDED) ends the lease at once; answers to
requests sent before it do not renew it.

``SessionLease`` is the sans-IO rule; ``LeaseKeeper`` is the trio task that
renews it with a cheap read of the broker's own registration.
"""

from __future__ import annotations

import logging
import math

import trio

from coordinator.client import AsyncCoordinatorClient
from coordinator.errors import CoordinatorError

logger = logging.getLogger(__name__)

LEASE_FRACTION = 0.75
RENEWALS_PER_TIMEOUT = 5


class SessionLease:
    def __init__(self, session_timeout: float) -> None:
        self.duration = session_timeout * LEASE_FRACTION
        self.valid_until = -math.inf
        self._not_before = -math.inf

    def renewed(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was answered within the session."""
        if sent_at >= self._not_before:
            self.valid_until = max(self.valid_until, sent_at + self.duration)

    def suspend(self, now: float) -> None:
        """The connection dropped (or the session ended): invalid until a request sent
        after ``now`` is answered."""
        self.valid_until = -math.inf
        self._not_before = now

    def valid(self, now: float) -> bool:
        return now < self.valid_until

    def set_timeout(self, session_timeout: float) -> None:
        """The session timeout the coordinator actually granted."""
        self.duration = session_timeout * LEASE_FRACTION


class LeaseKeeper:
    """The trio task renewing a ``SessionLease`` with a read of the broker's own
    registration every ``interval`` seconds (at once after ``kick``)."""

    def __init__(
        self, zk: AsyncCoordinatorClient, path: str, lease: SessionLease, interval: float
    ) -> None:
        self.zk = zk
        self.path = path
        self.lease = lease
        self.interval = interval
        self._wake = trio.Event()

    def kick(self) -> None:
        """Renew now (e.g. the connection came back)."""
        self._wake.set()

    async def renew_once(self) -> bool:
        sent_at = trio.current_time()
        try:
            if not self.zk.connected:
                return False
            await self.zk.exists(self.path)
        except CoordinatorError as exc:
            logger.debug("lease renewal failed: %s", exc)
            return False
        self.lease.renewed(sent_at)
        return True

    async def run(self) -> None:
        while True:
            await self.renew_once()
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
