"""What a holder knows about what it holds, from the client's connection states.

A lock, a lease or leadership is an ephemeral node: it lasts exactly as long as
the session that created it. The client reports the session's fate:

* SUSPENDED — the connection dropped; the session may still be alive, or the
  server may be about to expire it. The holder *may* have lost what it held.
  (The client suspends after 2/3 of the session timeout without hearing from
  the server, before the server can expire the session after the full timeout,
  so a holder is told before anybody else can take over.)
* RECONNECTED — the same session resumed: nothing was lost, and nobody else
  held it meanwhile.
* LOST (or CONNECTED with another session id) — the session is gone: so is
  what it held, for good. The client also declares LOST by itself once it has
  been suspended for a whole session timeout.

``Holding`` turns those into HoldState changes. It is sans-IO: the shells feed
it states and act on the changes it returns.
"""

from __future__ import annotations

import enum

from coordinator.client.connection_state import ConnectionState


class HoldState(enum.Enum):
    RELEASED = "released"
    """Not held (never acquired, or released)."""
    HELD = "held"
    """Held, and the session is known to be alive."""
    SUSPENDED = "suspended"
    """Acquired, but the connection is down: it may have been lost."""
    LOST = "lost"
    """The session that held it is gone: it is no longer held."""


class Holding:
    """The state machine of one held thing."""

    def __init__(self) -> None:
        self.state = HoldState.RELEASED
        self.session_id = 0

    @property
    def is_held(self) -> bool:
        """Held and known to be held (not while suspended, never after loss)."""
        return self.state is HoldState.HELD

    @property
    def active(self) -> bool:
        """Acquired and not yet released (even if suspended or lost)."""
        return self.state is not HoldState.RELEASED

    def acquired(self, session_id: int, connected: bool = True) -> None:
        self.state = HoldState.HELD if connected else HoldState.SUSPENDED
        self.session_id = session_id

    def released(self) -> None:
        self.state = HoldState.RELEASED
        self.session_id = 0

    def on_connection(self, state: ConnectionState, session_id: int) -> HoldState | None:
        """Feed a connection state (and the session id then current); returns the
        new HoldState if it changed."""
        if self.state in (HoldState.RELEASED, HoldState.LOST):
            return None
        new: HoldState = self.state
        if state is ConnectionState.SUSPENDED:
            new = HoldState.SUSPENDED
        elif state is ConnectionState.LOST:
            new = HoldState.LOST
        elif state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED):
            new = HoldState.HELD if session_id == self.session_id else HoldState.LOST
        if new is self.state:
            return None
        self.state = new
        return new
