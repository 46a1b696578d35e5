"""Counter: an atomic integer, updated by compare-and-set on the node version
(kazoo's Counter, Curator's SharedCount / DistributedAtomicLong).

``increment`` reads the value and its version, writes value+delta only if the
version is still the same, and on a conflict reads and tries again, so
concurrent updates never overwrite each other.

The failure that breaks the naive version: the write is applied but the
connection drops before the answer arrives. Retrying would count twice;
giving up would lose an update that in fact happened. So each write carries a
random operation id and the node keeps the ids of its last 16 writes with the
version each produced. After a lost answer the counter reads the node again:
our id is there → it applied; the version our write would have produced was
written by someone else, or the version did not move → it did not, and we
retry. Only if more than 16 other writes happened in between can the outcome
not be told; then CounterOutcomeUnknownError is raised (the counter itself is
consistent; only this call's outcome is unknown).

Node data is text: the value on the first line (so ``coordinator get`` shows
it), then ``<version> <operation id>`` lines. A node holding just a decimal
number (written by other tools) is read as that value.

    hits = Counter(zk, "/counters/hits")
    hits += 1                     # kazoo style: hits.pre_value, hits.post_value
    total = hits.increment(10)    # the new value
"""

from __future__ import annotations

import contextlib
import secrets

from coordinator.client import AsyncCoordinatorClient, CoordinatorClient
from coordinator.errors import BadVersionError, NodeExistsError, NoNodeError
from coordinator.recipes._driver import run_async, run_sync
from coordinator.recipes._ops import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    RETRIABLE,
    Call,
    Sleep,
    Steps,
    budget,
    call,
)
from coordinator.recipes.errors import CounterOutcomeUnknownError, RecipeError

RECENT_OPS = 16

Recent = list[tuple[int, str]]  # (version produced, operation id), newest first


def encode_counter(value: int, recent: Recent) -> bytes:
    lines = [str(value)] + [f"{version} {op}" for version, op in recent[:RECENT_OPS]]
    return "\n".join(lines).encode("ascii")


def decode_counter(path: str, data: bytes, default: int) -> tuple[int, Recent]:
    if not data.strip():
        return default, []
    try:
        first, *rest = data.decode("ascii").split("\n")
        value = int(first)
        recent = [(int(v), op) for v, op in (line.split(" ", 1) for line in rest if line)]
    except ValueError:
        raise RecipeError(f"{path} holds {data[:40]!r}, which is not a counter") from None
    return value, recent


class CounterCore:
    """Sans-IO steps of a counter."""

    def __init__(self, path: str, default: int = 0) -> None:
        if isinstance(default, bool) or not isinstance(default, int):
            raise TypeError(f"default must be an int, got {default!r}")
        self.path = path
        self.default = default

    def get(self) -> Steps[int]:
        deadline = yield from budget()
        try:
            data, _stat = yield from call("get", self.path, deadline=deadline)
        except NoNodeError:
            return self.default
        return decode_counter(self.path, data, self.default)[0]

    def add(self, delta: int) -> Steps[tuple[int, int]]:
        """Add ``delta`` exactly once; returns ``(before, after)``."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, got {delta!r}")
        deadline = yield from budget()
        op = secrets.token_hex(8)
        backoff = FIRST_BACKOFF
        while True:
            try:
                data, stat = yield from call("get", self.path, deadline=deadline)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    yield from call(
                        "create",
                        self.path,
                        deadline=deadline,
                        data=encode_counter(self.default, []),
                        make_parents=True,
                    )
                continue
            before, recent = decode_counter(self.path, data, self.default)
            after = before + delta
            produced = stat.version + 1
            try:
                yield Call(
                    "set",
                    (self.path, encode_counter(after, [(produced, op), *recent])),
                    {"version": stat.version},
                )
                return before, after
            except BadVersionError:
                continue
            except RETRIABLE as exc:
                applied = yield from self._applied(op, stat.version, deadline)
                if applied:
                    return before, after
                if applied is None:
                    raise CounterOutcomeUnknownError(
                        f"{self.path}: update {op} sent before the connection dropped; "
                        f"too many updates since to tell whether it applied"
                    ) from exc
                if not (yield Sleep(backoff, deadline)):
                    raise exc
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _applied(self, op: str, version: int, deadline: float | None) -> Steps[bool | None]:
        """Whether our write (made at ``version``) applied: True, False, or None (unknown)."""
        try:
            data, stat = yield from call("get", self.path, deadline=deadline)
        except NoNodeError:
            return None
        if stat.version == version:
            return False
        _value, recent = decode_counter(self.path, data, self.default)
        if any(o == op for _v, o in recent):
            return True
        if any(v == version + 1 for v, _o in recent):
            return False  # the version our write would have produced is someone else's
        return None


class Counter:
    """An atomic counter for the blocking client (kazoo's ``Counter``)."""

    def __init__(self, client: CoordinatorClient, path: str, default: int = 0) -> None:
        self.client = client
        self.path = path
        self._core = CounterCore(path, default)
        self.pre_value: int | None = None
        self.post_value: int | None = None

    @property
    def value(self) -> int:
        """The current value (``default`` while the node does not exist)."""
        return run_sync(self.client, self._core.get())

    def increment(self, delta: int = 1) -> int:
        """Add ``delta`` atomically and exactly once; returns the new value."""
        before, after = run_sync(self.client, self._core.add(delta))
        self.pre_value, self.post_value = before, after
        return after

    def decrement(self, delta: int = 1) -> int:
        """Subtract ``delta``; returns the new value."""
        return self.increment(-delta)

    def __iadd__(self, delta: int) -> Counter:
        self.increment(delta)
        return self

    def __isub__(self, delta: int) -> Counter:
        self.increment(-delta)
        return self


class AsyncCounter:
    """The trio form of ``Counter``."""

    def __init__(self, client: AsyncCoordinatorClient, path: str, default: int = 0) -> None:
        self.client = client
        self.path = path
        self._core = CounterCore(path, default)
        self.pre_value: int | None = None
        self.post_value: int | None = None

    async def get(self) -> int:
        return await run_async(self.client, self._core.get())

    async def increment(self, delta: int = 1) -> int:
        before, after = await run_async(self.client, self._core.add(delta))
        self.pre_value, self.post_value = before, after
        return after

    async def decrement(self, delta: int = 1) -> int:
        return await self.increment(-delta)
