"""The blocking coordinator client (kazoo-shaped) for threaded code.

Threading model: an AsyncCoordinatorClient runs in its own trio event loop on
a background thread; each blocking call enters that loop with
``trio.from_thread.run``. Watch callbacks and state listeners run one at a
time, in order, on a separate dispatcher thread (kazoo's handler thread), never
on the trio thread, so a callback may itself call blocking client methods.
"""

from __future__ import annotations

import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

import trio

from coordinator.client.async_client import AsyncCoordinatorClient, AsyncTransaction
from coordinator.client.connection_state import ConnectionState
from coordinator.client.retry import RetryPolicy
from coordinator.client.transaction import TransactionBuilder, TransactionResult, first_error
from coordinator.client.watch_registry import Watcher
from coordinator.errors import NotConnectedError
from coordinator.protocol import Stat

logger = logging.getLogger("coordinator.client")

P = ParamSpec("P")
T = TypeVar("T")

_STOP = object()
_THREAD_JOIN_TIMEOUT = 30.0


def _check_sync_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"{what} of the blocking client must be a plain function, not async")


class Transaction(TransactionBuilder):
    """A MULTI request of the blocking client; see AsyncTransaction.

    ``commit()`` returns one result per op, or exception instances on failure;
    ``with zk.transaction() as t:`` commits on a clean exit and raises the
    failing op's error.
    """

    def __init__(self, client: CoordinatorClient, inner: AsyncTransaction) -> None:
        super().__init__()
        self._client = client
        self._inner = inner
        self.ops = inner.ops  # one op list: the ops added here are the ones inner sends

    def commit(self) -> list[TransactionResult]:
        """Send the transaction: created path / Stat / True per op, or the errors."""
        return self._client._run(self._inner.commit)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return
        error = first_error(self.commit())
        if error is not None:
            raise error


class CoordinatorClient:
    """A coordinator session for threaded code (kazoo's KazooClient).

    ``with CoordinatorClient("h1:2181,h2:2181") as zk:`` starts it and closes
    the session on exit; or call ``start()`` and ``stop()``/``close()``. See
    AsyncCoordinatorClient for the session, reconnect and watch semantics.
    """

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._async = AsyncCoordinatorClient(
            hosts,
            session_timeout=session_timeout,
            connect_timeout=connect_timeout,
            retry_policy=retry_policy,
            callback_dispatcher=self._enqueue,
        )
        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._loop_thread: threading.Thread | None = None
        self._dispatch_thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ConnectionState:
        """The current connection state (LOST before start and after stop)."""
        return self._async.state

    @property
    def connected(self) -> bool:
        """Whether requests can be sent right now."""
        return self._async.connected

    @property
    def session_id(self) -> int:
        """The current session's id (0 when there is none)."""
        return self._async.session_id

    @property
    def session_timeout(self) -> float:
        """The negotiated session timeout in seconds."""
        return self._async.session_timeout

    @property
    def last_zxid(self) -> int:
        """The newest zxid seen in any response or watch event."""
        return self._async.last_zxid

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy ``retry`` follows."""
        return self._async.retry_policy

    def add_listener(self, listener: Callable[[ConnectionState], Any]) -> None:
        """Call ``listener(state)`` on the dispatcher thread at every state change."""
        _check_sync_callable(listener, "a listener")
        # A list append, atomic under the GIL; the trio side iterates over a copy.
        self._async.add_listener(listener)

    def remove_listener(self, listener: Callable[[ConnectionState], Any]) -> None:
        """Stop calling ``listener``."""
        self._async.remove_listener(listener)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the event-loop and dispatcher threads and wait for the first session.

        Raises NotConnectedError if no server answered within ``connect_timeout``.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._loop_thread is not None:
                raise RuntimeError("the client is already started")
            self._queue = queue.SimpleQueue()
            self._dispatch_thread = threading.Thread(
                target=self._dispatch_main,
                args=(self._queue,),
                name="coordinator-callbacks",
                daemon=True,
            )
            self._dispatch_thread.start()
            ready = threading.Event()
            outcome: list[BaseException | None] = []
            self._loop_thread = threading.Thread(
                target=trio.run,
                args=(self._trio_main, ready, outcome),
                name="coordinator-client",
                daemon=True,
            )
            self._loop_thread.start()
            ready.wait()
        error = outcome[0] if outcome else RuntimeError("the client thread ended early")
        if error is not None:
            with self._lock:
                loop_thread, self._loop_thread = self._loop_thread, None
                dispatch_thread, self._dispatch_thread = self._dispatch_thread, None
            self._join_threads(loop_thread, dispatch_thread)
            raise error

    def stop(self) -> None:
        """End the session (its ephemerals vanish at once) and stop the threads.

        Listeners see LOST. ``start()`` may be called again for a new session.
        """
        with self._lock:
            token, stop_event = self._token, self._stop_event
            loop_thread, self._loop_thread = self._loop_thread, None
            dispatch_thread, self._dispatch_thread = self._dispatch_thread, None
        if token is not None and stop_event is not None:
            try:
                trio.from_thread.run_sync(stop_event.set, trio_token=token)
            except trio.RunFinishedError:
                logger.debug("the client loop had already ended")
        self._join_threads(loop_thread, dispatch_thread)

    def close(self) -> None:
        """Stop (ending the session) and release the client for good."""
        self.stop()
        self._closed = True

    def __enter__(self) -> CoordinatorClient:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _trio_main(self, ready: threading.Event, outcome: list[BaseException | None]) -> None:
        self._stop_event = stop_event = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._async.start(nursery)
                except Exception as exc:
                    outcome.append(exc)  # re-raised by start() in the caller's thread
                    return
                self._token = trio.lowlevel.current_trio_token()
                outcome.append(None)
                ready.set()
                await stop_event.wait()
                await self._async.close()
                nursery.cancel_scope.cancel()
        finally:
            self._token = None
            ready.set()

    def _join_threads(
        self, loop_thread: threading.Thread | None, dispatch_thread: threading.Thread | None
    ) -> None:
        if loop_thread is not None:
            loop_thread.join(_THREAD_JOIN_TIMEOUT)
        # Queued after the loop ended, so the final LOST is delivered before it.
        self._queue.put(_STOP)
        # A callback may call stop(): its own thread ends after it returns.
        if dispatch_thread is not None and dispatch_thread is not threading.current_thread():
            dispatch_thread.join(_THREAD_JOIN_TIMEOUT)

    def _enqueue(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self._queue.put((fn, arg))

    @staticmethod
    def _dispatch_main(q: queue.SimpleQueue[Any]) -> None:
        while True:
            item = q.get()
            if item is _STOP:
                return
            fn, arg = item
            try:
                fn(arg)
            except Exception:
                logger.exception("coordinator callback %r failed", fn)

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the client's trio loop and wait for its result."""
        token = self._token
        if token is None:
            raise NotConnectedError("the client is not started")
        try:
            return trio.from_thread.run(fn, trio_token=token)
        except trio.RunFinishedError:
            raise NotConnectedError("the client is stopped") from None

    # -------------------------------------------------------------- requests

    def create(
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

        ``ttl`` (seconds) makes a persistent TTL node; ``make_parents`` creates
        missing ancestors. Raises NodeExistsError, NoNodeError (no parent).
        """
        return self._run(
            functools.partial(
                self._async.create,
                path,
                data,
                ephemeral=ephemeral,
                sequential=sequential,
                make_parents=make_parents,
                container=container,
                ttl=ttl,
            )
        )

    def get(self, path: str, watch: Watcher | None = None) -> tuple[bytes, Stat]:
        """A node's data and Stat; ``watch`` fires once on its next change or deletion."""
        self._check_watch(watch)
        return self._run(functools.partial(self._async.get, path, watch))

    def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        """Replace a node's data; with ``version`` >= 0 only if it is at that version."""
        return self._run(functools.partial(self._async.set, path, data, version))

    def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete a node; ``recursive`` deletes its descendants first, depth first."""
        self._run(functools.partial(self._async.delete, path, version, recursive))

    def exists(self, path: str, watch: Watcher | None = None) -> Stat | None:
        """The node's Stat or None; ``watch`` fires once on creation, change or deletion."""
        self._check_watch(watch)
        return self._run(functools.partial(self._async.exists, path, watch))

    @overload
    def get_children(
        self, path: str, watch: Watcher | None = None, include_stat: Literal[False] = False
    ) -> list[str]: ...

    @overload
    def get_children(
        self, path: str, watch: Watcher | None = None, *, include_stat: Literal[True]
    ) -> tuple[list[str], Stat]: ...

    @overload
    def get_children(
        self, path: str, watch: Watcher | None, include_stat: Literal[True]
    ) -> tuple[list[str], Stat]: ...

    def get_children(
        self, path: str, watch: Watcher | None = None, include_stat: bool = False
    ) -> list[str] | tuple[list[str], Stat]:
        """Sorted child names (and the node's Stat with ``include_stat``); ``watch``
        fires once when the child list changes or the node is deleted."""
        self._check_watch(watch)
        if include_stat:
            return self._run(
                functools.partial(self._async.get_children, path, watch, include_stat=True)
            )
        return self._run(functools.partial(self._async.get_children, path, watch))

    def ensure_path(self, path: str) -> None:
        """Create ``path`` and its missing ancestors (persistent, empty)."""
        self._run(functools.partial(self._async.ensure_path, path))

    def sync(self, path: str) -> None:
        """Wait until the server has applied everything before this call."""
        self._run(functools.partial(self._async.sync, path))

    def transaction(self) -> Transaction:
        """A new transaction (MULTI)."""
        return Transaction(self, self._async.transaction())

    def add_watch(self, path: str, callback: Watcher, recursive: bool = False) -> None:
        """Add a persistent watch: ``callback`` (on the dispatcher thread) gets every
        event of ``path`` (with ``recursive``, of its whole subtree) until removed."""
        _check_sync_callable(callback, "a watch callback")
        self._run(functools.partial(self._async.add_watch, path, callback, recursive))

    def remove_watches(self, path: str, kind: str = "any") -> None:
        """Remove this client's watches on ``path`` ("data", "child", "persistent", "any")."""
        self._run(functools.partial(self._async.remove_watches, path, kind))

    def server_stat(self) -> dict[str, Any]:
        """The server's SERVER_STAT map."""
        return self._run(self._async.server_stat)

    def retry(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` until it does not raise a retriable error (CONNECTION_LOSS,
        TOO_MANY_REQUESTS), sleeping per ``retry_policy`` (kazoo's zk.retry)."""
        policy = self.retry_policy
        delays = policy.delays()
        while True:
            try:
                return fn(*args, **kwargs)
            except policy.retriable:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)

    @staticmethod
    def _check_watch(watch: Watcher | None) -> None:
        if watch is not None:
            _check_sync_callable(watch, "a watch callback")
