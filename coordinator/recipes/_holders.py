"""The shells around ``Holding``: connection listeners that tell a holder it may
have lost (SUSPENDED) or has lost (LOST) what it holds, by a callback and, in
the trio forms, by cancelling the holder's scope."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

import trio

from coordinator.client import AsyncCoordinatorClient, ConnectionState, CoordinatorClient
from coordinator.recipes.holding import Holding, HoldState

logger = logging.getLogger("coordinator.recipes")

# Called with HoldState.SUSPENDED ("may have lost it") or HoldState.LOST ("lost it").
LostCallback = Callable[[HoldState], object]

_CONNECTED = (ConnectionState.CONNECTED, ConnectionState.RECONNECTED)


def _notify(callback: LostCallback | None, state: HoldState, what: str) -> None:
    if callback is None:
        return
    try:
        callback(state)
    except Exception:
        logger.exception("%s: on_lost callback failed", what)


class SyncHold:
    """Hold tracking for a blocking recipe. ``on_lost`` runs on the client's
    callback thread; it must not block for long (other callbacks wait)."""

    def __init__(self, client: CoordinatorClient, on_lost: LostCallback | None, what: str) -> None:
        self._client = client
        self._on_lost = on_lost
        self._what = what
        self._holding = Holding()
        self._lock = threading.Lock()

    @property
    def state(self) -> HoldState:
        return self._holding.state

    @property
    def is_held(self) -> bool:
        return self._holding.is_held

    def acquired(self, session_id: int) -> None:
        with self._lock:
            self._holding.acquired(session_id, self._client.state in _CONNECTED)
            if self._client.session_id != session_id:
                self._holding.on_connection(ConnectionState.LOST, self._client.session_id)
            state = self._holding.state
        self._client.add_listener(self._listener)
        if state is not HoldState.HELD:
            _notify(self._on_lost, state, self._what)

    def released(self) -> None:
        self._client.remove_listener(self._listener)
        with self._lock:
            self._holding.released()

    def _listener(self, state: ConnectionState) -> None:
        with self._lock:
            change = self._holding.on_connection(state, self._client.session_id)
        if change in (HoldState.SUSPENDED, HoldState.LOST):
            _notify(self._on_lost, change, self._what)


class AsyncHold:
    """Hold tracking for a trio recipe: ``on_lost`` is called on the trio thread
    and the registered scopes are cancelled on LOST, and on SUSPENDED too when
    ``cancel_on_suspend`` (Curator's standard policy: a suspended holder stops
    acting as one, since the server may expire its session any moment)."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        on_lost: LostCallback | None,
        what: str,
        cancel_on_suspend: bool,
    ) -> None:
        self._client = client
        self._on_lost = on_lost
        self._what = what
        self._cancel_on_suspend = cancel_on_suspend
        self._holding = Holding()
        self._scopes: list[trio.CancelScope] = []
        self._blocks: list[trio.CancelScope] = []

    @property
    def state(self) -> HoldState:
        return self._holding.state

    @property
    def is_held(self) -> bool:
        return self._holding.is_held

    def enter_block(self) -> None:
        """Start an ``async with`` body: a cancel scope that the hold cancels on loss."""
        scope = trio.CancelScope()
        scope.__enter__()
        self._blocks.append(scope)
        self.add_scope(scope)

    def exit_block(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> tuple[bool, HoldState | None]:
        """End the innermost body (before releasing): whether its exception was
        swallowed, and the hold's state if it was lost while the body ran."""
        scope = self._blocks.pop()
        self.remove_scope(scope)
        swallowed = bool(scope.__exit__(exc_type, exc, tb))
        state = self._holding.state
        lost = scope.cancelled_caught or (state is HoldState.LOST and exc_type is None)
        return swallowed, state if lost else None

    def acquired(self, session_id: int) -> None:
        self._holding.acquired(session_id, self._client.state in _CONNECTED)
        if self._client.session_id != session_id:
            self._holding.on_connection(ConnectionState.LOST, self._client.session_id)
        self._client.add_listener(self._listener)
        if self._holding.state is not HoldState.HELD:
            self._changed(self._holding.state)

    def released(self) -> None:
        self._client.remove_listener(self._listener)
        self._holding.released()

    def add_scope(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the hold is lost (or suspended, per the policy)."""
        self._scopes.append(scope)
        if self._should_cancel(self._holding.state):
            scope.cancel()

    def remove_scope(self, scope: trio.CancelScope) -> None:
        if scope in self._scopes:
            self._scopes.remove(scope)

    def _should_cancel(self, state: HoldState) -> bool:
        return state is HoldState.LOST or (state is HoldState.SUSPENDED and self._cancel_on_suspend)

    def _listener(self, state: ConnectionState) -> None:
        change = self._holding.on_connection(state, self._client.session_id)
        if change is not None:
            self._changed(change)

    def _changed(self, state: HoldState) -> None:
        if self._should_cancel(state):
            for scope in list(self._scopes):
                scope.cancel()
        if state in (HoldState.SUSPENDED, HoldState.LOST):
            _notify(self._on_lost, state, self._what)
