"""The trio coordinator client: one session, kept alive across connection loss.

All stateful decisions live in sans-IO helpers (ConnectionStateMachine,
Heartbeat, WatchRegistry, HostList, Backoff); this module owns the sockets,
timers and tasks and feeds those helpers events.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

import trio

from client.wire import ConnectionLostError, RpcChannel, ServerError
from coordinator.client.connection_state import (
    ConnectionState,
    ConnectionStateMachine,
    Heartbeat,
)
from coordinator.client.hosts import HostAddress, HostList, parse_hosts
from coordinator.client.requests import (
    check_data,
    check_path,
    check_version,
    create_payload,
    parse_optional_stat,
    parse_stat,
)
from coordinator.client.retry import Backoff, RetryPolicy
from coordinator.client.transaction import TransactionBuilder, TransactionResult, first_error
from coordinator.client.watch_registry import (
    PERSISTENT_KINDS,
    REMOVE_KINDS,
    Watcher,
    WatchKind,
    WatchRegistry,
)
from coordinator.errors import (
    ERRORS,
    AuthFailedError,
    CoordinatorError,
    NodeExistsError,
    NoNodeError,
    NotConnectedError,
    SessionExpiredError,
)
from coordinator.protocol import Api, Stat, WatchedEvent

logger = logging.getLogger("coordinator.client")

P = ParamSpec("P")
T = TypeVar("T")

StateListener = Callable[[ConnectionState], Any]
# Runs one callback with its argument somewhere else (a task, a thread); never blocks.
CallbackDispatcher = Callable[[Callable[[Any], Any], Any], None]

_CLOSE_TIMEOUT = 2.0
_MIN_ATTEMPT_TIMEOUT = 0.5


class _Attempt(enum.Enum):
    FAILED = "failed"  # back off, then try the next host
    RETRY_NOW = "retry_now"  # the session was lost: start a new one at once
    ENDED = "ended"  # a working connection dropped: reconnect at once


@dataclass(eq=False)
class _Connection:
    """One established connection and what belongs to it."""

    channel: RpcChannel
    heartbeat: Heartbeat
    scope: trio.CancelScope
    nursery: trio.Nursery
    address: HostAddress


class WatchStream:
    """Async iterator of the WatchedEvents of a persistent watch (see ``watch``)."""

    def __init__(self, receive: trio.MemoryReceiveChannel[WatchedEvent]) -> None:
        self._receive = receive

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchedEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def next(self, timeout: float | None = None) -> WatchedEvent:
        """The next event; raises TimeoutError after ``timeout`` seconds without one."""
        if timeout is None:
            return await self.__anext__()
        with trio.move_on_after(timeout):
            return await self.__anext__()
        raise TimeoutError(f"no watch event within {timeout}s")


class AsyncTransaction(TransactionBuilder):
    """A MULTI request under construction: every op succeeds or none is applied.

    ``await t.commit()`` returns one result per op (created path, Stat of a
    set, True for check and delete) or, when the transaction failed, the
    exception instances (the failing op's error, RolledBackError and
    RuntimeInconsistencyError for the others). As ``async with`` it commits on a
    clean exit and raises the failing op's error.
    """

    def __init__(self, client: AsyncCoordinatorClient) -> None:
        super().__init__()
        self._client = client

    async def commit(self) -> list[TransactionResult]:
        """Send the transaction; see the class docstring for the results."""
        response = await self._client._call(Api.MULTI, self.payload())
        return self.results(response)

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return
        error = first_error(await self.commit())
        if error is not None:
            raise error


class AsyncCoordinatorClient:
    """A coordinator session for trio code (kazoo's KazooClient, awaited).

    Use ``async with AsyncCoordinatorClient(hosts) as zk`` (or
    ``open_coordinator``), or ``await zk.start(nursery)`` then ``await zk.close()``.
    ``hosts`` is ``"host:port,host:port"``; ``session_timeout`` (seconds) is a
    proposal the server clamps; ``connect_timeout`` bounds the first connect
    and each later connect attempt.

    The session survives connection loss: the client reconnects (next host,
    back-off) with its session id and password and re-registers its watches.
    Listeners see CONNECTED, SUSPENDED, RECONNECTED and LOST; after LOST the
    client opens a new session by itself. Watch callbacks and listeners may be
    plain or async functions; they run in the client's nursery, never inside
    the network reader, so they may call the client.
    """

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry_policy: RetryPolicy | None = None,
        callback_dispatcher: CallbackDispatcher | None = None,
    ) -> None:
        if not session_timeout > 0 or not math.isfinite(session_timeout):
            raise ValueError(f"session_timeout must be a positive number, got {session_timeout}")
        if not connect_timeout > 0 or not math.isfinite(connect_timeout):
            raise ValueError(f"connect_timeout must be a positive number, got {connect_timeout}")
        self.hosts = HostList(parse_hosts(hosts))
        self.requested_session_timeout = float(session_timeout)
        self.connect_timeout = float(connect_timeout)
        self.retry_policy = retry_policy or RetryPolicy()
        self._external_dispatcher = callback_dispatcher
        self._sm = ConnectionStateMachine()
        self._registry = WatchRegistry()
        self._listeners: list[StateListener] = []
        self._password = b""
        self._negotiated_timeout = 0.0
        self._last_zxid = 0
        # Bumped whenever a session ends, so waiters can tell "same session" apart.
        self._session_epoch = 0
        self._conn: _Connection | None = None
        self._changed = trio.Event()
        self._started = False
        self._closed = False
        self._last_error = ""
        self._nursery: trio.Nursery | None = None
        self._loop_scope: trio.CancelScope | None = None
        self._callbacks_send: trio.MemorySendChannel[tuple[Callable[[Any], Any], Any]] | None = None
        self._streams: set[trio.MemorySendChannel[WatchedEvent]] = set()
        self._exit_stack: AsyncExitStack | None = None
        self._dispatcher_done = trio.Event()

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ConnectionState:
        """The current connection state (LOST before start and after close)."""
        return self._sm.state

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now (CONNECTED or RECONNECTED)."""
        return self._sm.is_connected and self._conn is not None

    @property
    def session_id(self) -> int:
        """The current session's id (0 when there is none)."""
        return self._sm.session_id

    @property
    def session_timeout(self) -> float:
        """The negotiated session timeout in seconds (the requested one before connecting)."""
        return self._negotiated_timeout or self.requested_session_timeout

    @property
    def last_zxid(self) -> int:
        """The newest zxid seen in any response or watch event."""
        return self._last_zxid

    @property
    def server_address(self) -> str | None:
        """The ``host:port`` connected to, or None."""
        return str(self._conn.address) if self._conn is not None else None

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(state)`` on every connection state change."""
        if not callable(listener):
            raise TypeError("a listener must be callable")
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------- lifecycle

    async def start(self, nursery: trio.Nursery) -> None:
        """Run the client's tasks in ``nursery`` and wait for the first session.

        Raises NotConnectedError (and stops) if no server answered within
        ``connect_timeout``.
        """
        if self._started:
            raise RuntimeError("the client is already started")
        self._started = True
        self._closed = False
        self._sm.reopen()
        self._nursery = nursery
        if self._external_dispatcher is None:
            send, receive = trio.open_memory_channel[tuple[Callable[[Any], Any], Any]](math.inf)
            self._callbacks_send = send
            self._dispatcher_done = trio.Event()
            nursery.start_soon(self._dispatch_loop, receive, self._dispatcher_done)
        self._loop_scope = trio.CancelScope()
        nursery.start_soon(self._connection_loop, self._loop_scope)
        try:
            with trio.move_on_after(self.connect_timeout):
                while not self.connected:
                    await self._changed.wait()
        except BaseException:
            await self.close()
            raise
        if not self.connected:
            reason = self._last_error or "no answer"
            await self.close()
            raise NotConnectedError(
                f"could not connect within {self.connect_timeout:g}s ({reason})"
            )

    async def stop(self) -> None:
        """End the session (CLOSE_SESSION: its ephemerals vanish at once) and stop."""
        await self.close()

    async def close(self) -> None:
        """End the session and stop the client's tasks; listeners see LOST.

        Safe to call twice. After close, calls raise NotConnectedError.
        """
        if self._closed or not self._started:
            return
        self._closed = True
        conn = self._conn
        if conn is not None and self._sm.is_connected:
            # Shielded so that a cancelled caller still ends the session promptly.
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    await conn.channel.call(int(Api.CLOSE_SESSION), 0, {})
                except (ConnectionLostError, ServerError) as exc:
                    logger.debug("CLOSE_SESSION failed: %s", exc)
        self._apply(self._sm.close())
        self._registry.clear()
        self._password = b""
        if self._loop_scope is not None:
            self._loop_scope.cancel()
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()
        if self._callbacks_send is not None:
            # The dispatcher drains what is queued (the LOST above), then ends.
            self._callbacks_send.close()
            self._callbacks_send = None
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                await self._dispatcher_done.wait()
        self._started = False

    async def __aenter__(self) -> AsyncCoordinatorClient:
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        try:
            await self.start(nursery)
        except BaseException:
            # start() closed the client, so the nursery's tasks are ending.
            await stack.aclose()
            raise
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        nursery = self._nursery
        try:
            await self.close()
        finally:
            if stack is not None:
                if nursery is not None:
                    nursery.cancel_scope.cancel()  # async callbacks still running
                # Exited without the body's exception so that it is not wrapped in a group.
                await stack.aclose()

    # -------------------------------------------------------------- requests

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        make_parents: bool = False,
        container: bool = False,
        ttl: float | None = None,
    ) -> str:
        """Create a node and return its actual path (with the sequence suffix).

        ``ttl`` (seconds) makes a persistent TTL node, removed by the server once
        it has had no children and no change for that long. ``make_parents``
        creates missing ancestors as persistent nodes.
        Raises NodeExistsError, NoNodeError (no parent), NoChildrenForEphemeralsError.
        """
        payload = create_payload(
            path,
            data,
            ephemeral=ephemeral,
            sequential=sequential,
            make_parents=make_parents,
            container=container,
            ttl=ttl,
        )
        response = await self._call(Api.CREATE, payload)
        return str(response["path"])

    async def get(self, path: str, watch: Watcher | None = None) -> tuple[bytes, Stat]:
        """A node's data and Stat; ``watch`` fires once on its next change or deletion."""
        path = check_path(path)
        response = await self._watched_call(Api.GET_DATA, path, WatchKind.DATA, watch)
        return bytes(response["data"]), parse_stat(response["stat"])

    async def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        """Replace a node's data; with ``version`` >= 0 only if it is at that version."""
        payload = {
            "path": check_path(path),
            "data": check_data(data),
            "version": check_version(version),
        }
        response = await self._call(Api.SET_DATA, payload)
        return parse_stat(response["stat"])

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete a node; ``recursive`` first deletes its descendants, depth first.

        Raises NoNodeError, BadVersionError, NotEmptyError (not recursive).
        """
        path = check_path(path)
        check_version(version)
        if recursive:
            children = await self.get_children(path)
            for child in children:
                await self._delete_subtree(_join(path, child))
        await self._call(Api.DELETE, {"path": path, "version": version})

    async def _delete_subtree(self, path: str) -> None:
        try:
            children = await self.get_children(path)
        except NoNodeError:
            return  # deleted by someone else meanwhile
        for child in children:
            await self._delete_subtree(_join(path, child))
        try:
            await self._call(Api.DELETE, {"path": path, "version": -1})
        except NoNodeError:
            return

    async def exists(self, path: str, watch: Watcher | None = None) -> Stat | None:
        """The node's Stat or None; ``watch`` fires once on creation, change or deletion."""
        path = check_path(path)
        response = await self._watched_call(Api.EXISTS, path, WatchKind.EXIST, watch)
        stat = parse_optional_stat(response.get("stat"))
        if watch is not None and stat is not None:
            # On an existing node the server keeps a data watch; re-register it as one.
            self._registry.move(WatchKind.EXIST, WatchKind.DATA, path, watch)
        return stat

    @overload
    async def get_children(
        self, path: str, watch: Watcher | None = None, include_stat: Literal[False] = False
    ) -> list[str]: ...

    @overload
    async def get_children(
        self, path: str, watch: Watcher | None = None, *, include_stat: Literal[True]
    ) -> tuple[list[str], Stat]: ...

    @overload
    async def get_children(
        self, path: str, watch: Watcher | None, include_stat: Literal[True]
    ) -> tuple[list[str], Stat]: ...

    async def get_children(
        self, path: str, watch: Watcher | None = None, include_stat: bool = False
    ) -> list[str] | tuple[list[str], Stat]:
        """The sorted child names (and the node's Stat with ``include_stat``);
        ``watch`` fires once when the child list changes or the node is deleted."""
        path = check_path(path)
        response = await self._watched_call(Api.GET_CHILDREN, path, WatchKind.CHILD, watch)
        children = [str(c) for c in response["children"]]
        if include_stat:
            return children, parse_stat(response["stat"])
        return children

    async def ensure_path(self, path: str) -> None:
        """Create ``path`` and its missing ancestors (persistent, empty)."""
        path = check_path(path)
        if path == "/":
            return
        try:
            await self.create(path, make_parents=True)
        except NodeExistsError:
            return

    async def sync(self, path: str) -> None:
        """Wait until the server has applied everything before this call (ZooKeeper sync)."""
        await self._call(Api.SYNC, {"path": check_path(path)})

    def transaction(self) -> AsyncTransaction:
        """A new transaction (MULTI); see AsyncTransaction."""
        return AsyncTransaction(self)

    async def add_watch(self, path: str, callback: Watcher, recursive: bool = False) -> None:
        """Add a persistent watch (ZooKeeper 3.6 addWatch): ``callback`` gets every
        event of ``path`` (and, with ``recursive``, of all its descendants, except
        children-changed events) until ``remove_watches``. It survives reconnects
        and session loss (re-registered on the new session)."""
        path = check_path(path)
        _check_watcher(callback)
        kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
        added = False

        def register() -> None:
            nonlocal added
            added = self._registry.add(kind, path, callback)

        try:
            await self._call(Api.ADD_WATCH, {"path": path, "mode": kind.value}, register)
        except BaseException:
            if added:
                self._registry.discard(kind, path, callback)
            raise

    async def remove_watches(self, path: str, kind: str = "any") -> None:
        """Remove this client's watches on ``path``: kind "data", "child",
        "persistent" or "any". Raises NoWatcherError when the server has none."""
        path = check_path(path)
        kinds = REMOVE_KINDS.get(kind)
        if kinds is None:
            raise ValueError(f"kind must be one of {sorted(REMOVE_KINDS)}, got {kind!r}")
        self._registry.remove(path, kinds)
        await self._call(Api.REMOVE_WATCHES, {"path": path, "kind": kind})

    @asynccontextmanager
    async def watch(self, path: str, recursive: bool = False) -> AsyncIterator[WatchStream]:
        """A persistent watch as an async iterator of WatchedEvent::

            async with zk.watch("/app", recursive=True) as events:
                async for event in events: ...

        The watch is removed on exit; the iterator ends if the client closes.
        """
        send, receive = trio.open_memory_channel[WatchedEvent](math.inf)

        def deliver(event: WatchedEvent) -> None:
            try:
                send.send_nowait(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the consumer is gone

        kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
        await self.add_watch(path, deliver, recursive=recursive)
        self._streams.add(send)
        try:
            yield WatchStream(receive)
        finally:
            self._streams.discard(send)
            send.close()
            receive.close()
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                await self._remove_persistent(kind, path, deliver)

    async def _remove_persistent(self, kind: WatchKind, path: str, callback: Watcher) -> None:
        """Drop one persistent watcher; tell the server only when none is left."""
        if not self._registry.discard(kind, path, callback) or self._registry.has(kind, path):
            return
        if self._closed or not self._started:
            return
        try:
            await self._call(Api.REMOVE_WATCHES, {"path": path, "kind": "persistent"})
            # REMOVE_WATCHES removed both persistent modes; restore the one still in use.
            for other in PERSISTENT_KINDS:
                if self._registry.has(other, path):
                    await self._call(Api.ADD_WATCH, {"path": path, "mode": other.value})
        except (CoordinatorError, ConnectionLostError) as exc:
            logger.debug("removing the watch on %s failed: %s", path, exc)

    async def server_stat(self) -> dict[str, Any]:
        """The server's SERVER_STAT map (version, counts, latencies; see protocol)."""
        return await self._call(Api.SERVER_STAT, {})

    async def retry(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` until it does not raise a retriable error (CONNECTION_LOSS,
        TOO_MANY_REQUESTS), sleeping per ``retry_policy`` (kazoo's zk.retry)."""
        policy = self.retry_policy
        delays = policy.delays()
        while True:
            try:
                return await fn(*args, **kwargs)
            except policy.retriable:
                delay = next(delays, None)
                if delay is None:
                    raise
                await trio.sleep(delay)

    # ------------------------------------------------------------ internals

    async def _watched_call(
        self, api: Api, path: str, kind: WatchKind, watch: Watcher | None
    ) -> dict[str, Any]:
        if watch is None:
            return await self._call(api, {"path": path, "watch": False})
        _check_watcher(watch)
        added = False

        def register() -> None:
            nonlocal added
            added = self._registry.add(kind, path, watch)

        try:
            response = await self._call(api, {"path": path, "watch": True}, register)
        except BaseException:
            # A failed request leaves no watch (exists() of a missing node succeeds).
            if added:
                self._registry.discard(kind, path, watch)
            raise
        return response

    async def _call(
        self, api: Api, payload: dict[str, Any], before_send: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Send one request on the current connection, waiting for one if needed.

        ``before_send`` registers a watcher once the connection (and so the
        session) is known and before the request leaves: its event may arrive
        right behind the response.
        """
        conn = await self._wait_connected()
        if before_send is not None:
            before_send()
        conn.heartbeat.sent(trio.current_time())
        try:
            response = await conn.channel.call(int(api), 0, payload)
        except ConnectionLostError as exc:
            raise NotConnectedError(f"connection lost during {api.name}: {exc}") from None
        except SessionExpiredError:
            self._expire(conn)
            raise
        except ServerError:
            conn.heartbeat.heard(trio.current_time())
            raise
        conn.heartbeat.heard(trio.current_time())
        if not isinstance(response, dict):
            raise CoordinatorError(f"malformed {api.name} response: {response!r}")
        self._see_zxid(response.get("zxid"))
        return response

    async def _wait_connected(self) -> _Connection:
        """The live connection; while SUSPENDED wait for the reconnect.

        Raises SessionExpiredError if the session this call started under is
        lost meanwhile, NotConnectedError if closed or nothing comes in time.
        """
        if not self._started or self._closed:
            raise NotConnectedError(
                "the client is not started" if not self._closed else "the client is closed"
            )
        epoch = self._session_epoch if self._sm.has_session else None
        give_up_at = self._sm.give_up_at
        now = trio.current_time()
        # Suspended: the loop declares LOST at give_up_at; a little slack lets that win.
        deadline = (
            give_up_at + 0.5 if give_up_at is not None else now + self.requested_session_timeout
        )
        while True:
            if self._closed:
                raise NotConnectedError("the client is closed")
            if epoch is not None and epoch != self._session_epoch:
                raise SessionExpiredError("the session was lost while waiting for a reconnect")
            conn = self._conn
            # A channel that already failed is on its way out: wait for the next one.
            if conn is not None and self._sm.is_connected and conn.channel.is_open:
                return conn
            changed = self._changed
            with trio.move_on_at(deadline):
                await changed.wait()
                continue
            raise NotConnectedError(f"not connected to the coordinator ({self._last_error})")

    def _see_zxid(self, zxid: object) -> None:
        if type(zxid) is int and zxid > self._last_zxid:
            self._last_zxid = zxid

    def _apply(self, changes: list[ConnectionState]) -> None:
        """Announce state changes to listeners and wake waiters."""
        if not changes:
            return
        for state in changes:
            if state is ConnectionState.LOST:
                self._session_epoch += 1
                self._password = b""
                self._registry.clear_one_shot()
            logger.info("coordinator connection state: %s", state.value)
            for listener in list(self._listeners):
                self._dispatch(listener, state)
        self._changed.set()
        self._changed = trio.Event()

    def _expire(self, conn: _Connection | None) -> None:
        """The server ended our session: LOST now, then a new session."""
        self._apply(self._sm.session_expired(trio.current_time()))
        if conn is not None:
            conn.scope.cancel()

    def _dispatch(self, fn: Callable[[Any], Any], arg: Any) -> None:
        if self._external_dispatcher is not None:
            self._external_dispatcher(fn, arg)
        elif self._callbacks_send is not None:
            try:
                self._callbacks_send.send_nowait((fn, arg))
            except trio.BrokenResourceError:
                # The dispatcher task is gone: the client is shutting down.
                logger.debug("dropping callback %r: client is closing", fn)

    async def _dispatch_loop(
        self, receive: trio.MemoryReceiveChannel[tuple[Callable[[Any], Any], Any]], done: trio.Event
    ) -> None:
        try:
            async with receive:
                async for fn, arg in receive:
                    try:
                        result = fn(arg)
                    except Exception:
                        logger.exception("coordinator callback %r failed", fn)
                        continue
                    if inspect.isawaitable(result) and self._nursery is not None:
                        self._nursery.start_soon(_await_callback, fn, result)
        finally:
            done.set()

    def _on_push(self, event: Any) -> None:
        """A server push, called by the channel in arrival order."""
        conn = self._conn
        if conn is not None:
            conn.heartbeat.heard(trio.current_time())
        if not isinstance(event, dict):
            logger.warning("ignoring malformed push %r", event)
            return
        kind = event.get("type")
        if kind == "watch":
            try:
                watched = WatchedEvent(
                    str(event["event"]), str(event["path"]), int(event.get("zxid", 0))
                )
            except (KeyError, TypeError, ValueError):
                logger.warning("ignoring malformed watch event %r", event)
                return
            self._see_zxid(watched.zxid)
            for watcher in self._registry.fire(watched):
                self._dispatch(watcher, watched)
        elif kind == "session":
            if event.get("state") == "expired" or (
                event.get("state") == "closed" and not self._closed
            ):
                self._expire(conn)
        else:
            logger.debug("ignoring push %r", event)

    # ---------------------------------------------------- connection loop

    def _attempt_timeout(self) -> float:
        """Per-attempt limit: ZooKeeper's session timeout / host count, within connect_timeout."""
        share = self.session_timeout / len(self.hosts)
        return max(_MIN_ATTEMPT_TIMEOUT, min(self.connect_timeout, share))

    async def _connection_loop(self, scope: trio.CancelScope) -> None:
        backoff = Backoff(maximum=max(0.05, min(1.0, self.session_timeout / 3)))
        with scope:
            while not self._closed:
                self._apply(self._sm.tick(trio.current_time()))
                outcome = await self._attempt(self.hosts.next())
                if outcome is _Attempt.ENDED:
                    backoff.reset()
                    continue
                if outcome is _Attempt.RETRY_NOW:
                    continue
                wake = trio.current_time() + backoff.next_delay()
                give_up_at = self._sm.give_up_at
                await trio.sleep_until(wake if give_up_at is None else min(wake, give_up_at))

    async def _attempt(self, address: HostAddress) -> _Attempt:
        """Connect to one host and, if that works, serve the connection until it ends."""
        deadline = trio.current_time() + self._attempt_timeout()
        give_up_at = self._sm.give_up_at
        if give_up_at is not None:
            deadline = min(deadline, give_up_at)
        stream: trio.SocketStream | None = None
        with trio.move_on_at(deadline):
            try:
                stream = await trio.open_tcp_stream(address.host, address.port)
            except OSError as exc:
                self._last_error = f"{address}: {_describe_os_error(exc)}"
                return _Attempt.FAILED
        if stream is None:
            self._last_error = f"{address}: connect timed out"
            return _Attempt.FAILED
        channel = RpcChannel(stream, ERRORS, on_push=self._on_push)
        conn: _Connection | None = None
        outcome = _Attempt.ENDED
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_run_channel, channel, nursery.cancel_scope)
                result = await self._handshake(channel, address, deadline)
                if isinstance(result, _Attempt) or self._closed:
                    outcome = result if isinstance(result, _Attempt) else _Attempt.ENDED
                    nursery.cancel_scope.cancel()
                else:
                    conn = self._connected(channel, address, nursery, result)
        finally:
            if conn is not None and self._conn is conn:
                self._conn = None
                if not self._closed:
                    self._apply(self._sm.disconnected(trio.current_time()))
        return outcome

    async def _handshake(
        self, channel: RpcChannel, address: HostAddress, deadline: float
    ) -> int | _Attempt:
        """Send CONNECT; the session id on success (password and timeout stored),
        else what to do next."""
        resume_id = self._sm.session_id if self._sm.has_session else 0
        request = {
            "session_id": resume_id,
            "password": self._password if resume_id else b"",
            "timeout_ms": round(self.requested_session_timeout * 1000),
            "last_zxid": self._last_zxid,
        }
        response: Any = None
        try:
            with trio.move_on_at(deadline):
                response = await channel.call(int(Api.CONNECT), 0, request)
        except (SessionExpiredError, AuthFailedError) as exc:
            self._last_error = f"{address}: {exc}"
            self._expire(None)
            return _Attempt.RETRY_NOW
        except ConnectionLostError as exc:
            self._last_error = f"{address}: {exc}"
            return _Attempt.FAILED
        except ServerError as exc:
            # e.g. BAD_ARGUMENTS: this server is behind the zxid we have seen.
            self._last_error = f"{address}: {exc}"
            logger.warning("coordinator %s refused the session: %s", address, exc)
            return _Attempt.FAILED
        if response is None:
            self._last_error = f"{address}: no answer to CONNECT"
            return _Attempt.FAILED
        try:
            session_id = int(response["session_id"])
            password = bytes(response["password"])
            timeout = int(response["timeout_ms"]) / 1000
        except (KeyError, TypeError, ValueError):
            self._last_error = f"{address}: malformed CONNECT response"
            return _Attempt.FAILED
        if timeout <= 0:
            self._last_error = f"{address}: bad negotiated timeout {timeout}"
            return _Attempt.FAILED
        if resume_id and not self._sm.has_session:
            # We gave this session up (LOST) while the attempt ran; end it for good.
            with trio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    await channel.call(int(Api.CLOSE_SESSION), 0, {})
                except (ConnectionLostError, ServerError) as exc:
                    logger.debug("closing the abandoned session failed: %s", exc)
            return _Attempt.RETRY_NOW
        if resume_id and session_id != resume_id:
            self._expire(None)  # the server gave a new session: the old one is gone
        # The server's zxid is not taken here: SET_WATCHES must use what we had seen.
        self._password = password
        self._negotiated_timeout = timeout
        return session_id

    def _connected(
        self, channel: RpcChannel, address: HostAddress, nursery: trio.Nursery, session_id: int
    ) -> _Connection:
        now = trio.current_time()
        conn = _Connection(
            channel,
            Heartbeat(self._negotiated_timeout, now),
            nursery.cancel_scope,
            nursery,
            address,
        )
        self._conn = conn
        self._last_error = ""
        if not self._sm.has_session:
            # A new session: one-shot watches died with the old one; persistent
            # ones are re-added below (Curator's PersistentWatcher does the same).
            self._registry.clear_one_shot()
        payload = self._registry.set_watches_payload(self._last_zxid)
        if payload is not None:
            # Sent before any waiting request, so catch-up events precede their responses.
            slot = channel.send(int(Api.SET_WATCHES), 0, payload)
            nursery.start_soon(_await_set_watches, slot, address)
        nursery.start_soon(self._heartbeat_loop, conn)
        self._apply(self._sm.connected(now, session_id, self._negotiated_timeout))
        return conn

    async def _heartbeat_loop(self, conn: _Connection) -> None:
        heartbeat = conn.heartbeat
        while True:
            await trio.sleep_until(heartbeat.next_wakeup())
            now = trio.current_time()
            if heartbeat.silent(now):
                logger.warning(
                    "coordinator %s silent for %.1fs; reconnecting",
                    conn.address,
                    now - heartbeat.last_heard,
                )
                self._last_error = f"{conn.address}: server silent"
                conn.scope.cancel()
                return
            if heartbeat.ping_due(now):
                heartbeat.sent(now)
                conn.nursery.start_soon(self._ping, conn)

    async def _ping(self, conn: _Connection) -> None:
        try:
            response = await conn.channel.call(int(Api.PING), 0, {})
        except ConnectionLostError:
            return
        except SessionExpiredError:
            self._expire(conn)
            return
        except ServerError as exc:
            logger.warning("PING failed: %s", exc)
            return
        conn.heartbeat.heard(trio.current_time())
        if isinstance(response, dict):
            self._see_zxid(response.get("zxid"))


async def _run_channel(channel: RpcChannel, scope: trio.CancelScope) -> None:
    try:
        await channel.run()
    finally:
        scope.cancel()  # the connection is over: stop its other tasks too


async def _await_set_watches(slot: Any, address: HostAddress) -> None:
    await slot.event.wait()
    if slot.error is not None and not isinstance(slot.error, ConnectionLostError):
        logger.warning("re-registering watches on %s failed: %s", address, slot.error)


async def _await_callback(fn: Callable[[Any], Any], awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("coordinator callback %r failed", fn)


def _describe_os_error(exc: OSError) -> str:
    """ "connection refused" rather than trio's "all attempts to connect ... failed"."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons = {_os_reason(e) for e in cause.exceptions if isinstance(e, OSError)}
        if reasons:
            return ", ".join(sorted(reasons))
    return _os_reason(exc)


def _os_reason(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _check_watcher(watch: object) -> None:
    if not callable(watch):
        raise TypeError(f"a watch must be a callable taking a WatchedEvent, got {watch!r}")


def _join(parent: str, child: str) -> str:
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


@asynccontextmanager
async def open_coordinator(
    hosts: str = "127.0.0.1:2181",
    *,
    session_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    retry_policy: RetryPolicy | None = None,
) -> AsyncIterator[AsyncCoordinatorClient]:
    """``async with open_coordinator(hosts) as zk``: a started AsyncCoordinatorClient,
    whose session is closed on exit."""
    async with AsyncCoordinatorClient(
        hosts,
        session_timeout=session_timeout,
        connect_timeout=connect_timeout,
        retry_policy=retry_policy,
    ) as zk:
        yield zk


async def fetch_server_stat(hosts: str = "127.0.0.1:2181", timeout: float = 5.0) -> dict[str, Any]:
    """SERVER_STAT from the first server that answers, without opening a session
    (ZooKeeper's ``srvr`` four-letter word). Raises NotConnectedError."""
    errors: list[str] = []
    for address in parse_hosts(hosts):
        with trio.move_on_after(timeout):
            try:
                stream = await trio.open_tcp_stream(address.host, address.port)
            except OSError as exc:
                errors.append(f"{address}: {_describe_os_error(exc)}")
                continue
            channel = RpcChannel(stream, ERRORS)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel.run)
                try:
                    response = await channel.call(int(Api.SERVER_STAT), 0, {})
                except ConnectionLostError as exc:
                    errors.append(f"{address}: {exc}")
                    continue
                finally:
                    await channel.aclose()
                    nursery.cancel_scope.cancel()
                if not isinstance(response, dict):
                    raise CoordinatorError(f"malformed SERVER_STAT response: {response!r}")
                return response
        errors.append(f"{address}: timed out")
    raise NotConnectedError("; ".join(errors))
