"""The operations a recipe's steps yield, and retry helpers built on them.

Every recipe's logic is written once, as a generator ("steps") that yields
operations and receives their results; a driver (``_driver``) executes them
against the blocking or the trio client. The steps never touch a socket, a
thread or a clock: deadlines are opaque values the driver hands out and checks
(DESIGN §2, sans-IO cores). An operation that fails is thrown back into the
generator as the client's exception.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from client.wire import ConnectionLostError
from coordinator.errors import (
    CoordinatorError,
    NotConnectedError,
    SessionExpiredError,
    TooManyRequestsError,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """``client.<method>(*args, **kwargs)``; the result is sent back."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchCall:
    """``client.<method>(path, watch=..., **kwargs)`` with a one-shot watch that wakes
    a waiter; the result is ``(value, waiter)``. Pass ``waiter`` to share one waiter
    between several watches."""

    method: str
    path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    waiter: object | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Block until the waiter's watch fires, the connection state changes or the
    recipe is woken (True), or until ``deadline`` (False)."""

    waiter: object
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Back off for ``seconds`` (cut short by a connection state change); False if
    ``deadline`` has passed."""

    seconds: float
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Deadline:
    """The driver's absolute deadline ``timeout`` seconds from now (None: never)."""

    timeout: float | None


@dataclass(frozen=True, slots=True)
class Transact:
    """A transaction: ``ops`` are ``(method, args, kwargs)`` of the transaction
    builder (check, create, set_data, delete); the result is the commit's list."""

    ops: tuple[tuple[str, tuple[Any, ...], Mapping[str, Any]], ...]


@dataclass(frozen=True, slots=True)
class Session:
    """The client's current ``(session_id, session_timeout)``."""


Op = Call | WatchCall | Wait | Sleep | Deadline | Transact | Session
Steps = Generator[Op, Any, T]

# Failures after which the same request may succeed on a later attempt. A
# request that failed with one of them may or may not have been applied.
RETRIABLE: tuple[type[Exception], ...] = (
    NotConnectedError,
    ConnectionLostError,
    TooManyRequestsError,
    SessionExpiredError,
)

# What a background task (an observer, a re-join) outlives: it logs, pauses, retries.
TRANSIENT: tuple[type[Exception], ...] = (*RETRIABLE, CoordinatorError)

# How long an operation with no timeout of its own (release, put, increment,
# a lookup) keeps retrying through connection loss before it gives up.
RETRY_BUDGET = 60.0
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0


def budget(timeout: float | None = RETRY_BUDGET) -> Steps[float | None]:
    """A deadline ``timeout`` seconds from now."""
    deadline: float | None = yield Deadline(timeout)
    return deadline


def expired(deadline: float | None) -> Steps[bool]:
    """Whether ``deadline`` has passed."""
    if deadline is None:
        return False
    alive: bool = yield Sleep(0.0, deadline)
    return not alive


def call(method: str, *args: Any, deadline: float | None, **kwargs: Any) -> Steps[Any]:
    """An idempotent client call, retried through connection loss until ``deadline``
    (after which the last retriable error is raised)."""
    delay = FIRST_BACKOFF
    while True:
        try:
            return (yield Call(method, args, kwargs))
        except RETRIABLE as exc:
            if not (yield Sleep(delay, deadline)):
                raise exc
            delay = min(delay * 2, MAX_BACKOFF)


def watch_call(
    method: str, path: str, *, deadline: float | None, waiter: object | None = None
) -> Steps[tuple[Any, object]]:
    """``WatchCall`` retried through connection loss until ``deadline``."""
    delay = FIRST_BACKOFF
    while True:
        try:
            result: tuple[Any, object] = yield WatchCall(method, path, {}, waiter)
            return result
        except RETRIABLE as exc:
            if not (yield Sleep(delay, deadline)):
                raise exc
            delay = min(delay * 2, MAX_BACKOFF)


def session_id() -> Steps[int]:
    """The client's current session id (0 while it has none)."""
    sid, _timeout = yield Session()
    return int(sid)


def join(parent: str, child: str) -> str:
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]
