"""A trio event loop in a background thread, for the blocking clients.

The blocking ``Producer``, ``Consumer`` and ``Admin`` each own one ``IoThread``:
their async counterparts' machinery runs in it, and the user's thread calls in
with ``run`` (wait for an async function's result) or ``run_sync_soon`` (fire a
callback without waiting, e.g. to wake the producer's sender).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from client.errors import ClientClosedError, ClientTimeoutError

T = TypeVar("T")


class IoThread:
    """Runs ``main(nursery)`` in a trio loop in a daemon thread until ``stop``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._main: Callable[[trio.Nursery], Awaitable[None]] | None = None
        self.error: BaseException | None = None
        self._start_error: BaseException | None = None

    @property
    def alive(self) -> bool:
        """Whether the I/O thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, main: Callable[[trio.Nursery], Awaitable[None]], timeout: float = 30.0) -> None:
        """Start the thread; returns once ``main`` has run up to its first checkpoint
        (so everything it set up synchronously is ready)."""
        self._main = main
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ClientTimeoutError(f"{self.name}: the I/O thread did not start in {timeout}s")
        if self._start_error is not None:
            raise self._start_error

    def _run(self) -> None:
        try:
            trio.run(self._amain)
        except BaseException as exc:  # the thread's last word: kept for the user thread
            self.error = exc
            if not self._ready.is_set():
                self._start_error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._main is None:
                raise RuntimeError("IoThread started without a main function")
            await self._main(nursery)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _check(self) -> trio.lowlevel.TrioToken:
        token = self._token
        if token is None or not self.alive:
            if self.error is not None:
                raise ClientClosedError(f"{self.name}: the I/O thread died: {self.error!r}")
            raise ClientClosedError(f"{self.name}: the client is closed")
        return token

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the loop and return its result (blocking)."""
        token = self._check()
        try:
            return trio.from_thread.run(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            raise ClientClosedError(f"{self.name}: the client is closed") from None

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the loop and return its result (blocking)."""
        token = self._check()
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            raise ClientClosedError(f"{self.name}: the client is closed") from None

    def run_sync_soon(self, fn: Callable[[], object]) -> None:
        """Schedule ``fn()`` in the loop without waiting (safe from any thread)."""
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(fn)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Cancel everything in the loop and join the thread."""
        token = self._token
        if token is not None and self.alive:
            stop = self._stop
            if stop is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
