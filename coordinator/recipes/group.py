"""GroupMembership: who is in the group, with each member's data (Curator's GroupMember).

A member is an ephemeral node ``<path>/<member_id>`` holding its data, so a
crashed member leaves the group when its session expires. Joining is
idempotent and survives connection loss: a create retried after a lost answer
finds the node already there, sees that it belongs to our own session, and
takes it as ours; a node of the same id owned by another live session is a
clash (MemberExistsError), never silently taken over.

After a session loss the member re-joins by itself as soon as the client has a
new session (Curator's persistent ephemeral node), for as long as it has not
called ``leave()``.

    group = GroupMembership(zk, "/groups/workers", "worker-7", data=b"10.0.0.7")
    with group:
        print(group.members())            # {"worker-7": b"10.0.0.7", ...}
        with group.watch(print): ...       # called with the members at every change
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import trio

from coordinator.client import AsyncCoordinatorClient, ConnectionState, CoordinatorClient
from coordinator.errors import NodeExistsError, NoNodeError
from coordinator.recipes._driver import run_async, run_sync
from coordinator.recipes._ops import TRANSIENT, Steps, budget, call, join, session_id
from coordinator.recipes._watching import ChangeStream, Observer, observe, read_children
from coordinator.recipes.errors import MemberExistsError

logger = logging.getLogger("coordinator.recipes")

Members = dict[str, bytes]


def check_member_id(member_id: str) -> str:
    """A member id is one node name: non-empty, no ``/``, not ``.``/``..``."""
    if not isinstance(member_id, str):
        raise TypeError(f"a member id must be a str, got {type(member_id).__name__}")
    if (
        not member_id
        or "/" in member_id
        or member_id in (".", "..")
        or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in member_id)
    ):
        raise ValueError(f"invalid member id {member_id!r}: it must be one node name")
    return member_id


def create_owned_ephemeral(
    node: str, data: bytes, deadline: float | None, clash: Callable[[str], Exception]
) -> Steps[int]:
    """Create the ephemeral ``node`` once, despite connection loss: an existing node
    of our own session is ours; another session's raises ``clash(node)``.
    Returns the owning session id."""
    while True:
        before = yield from session_id()
        try:
            yield from call(
                "create", node, deadline=deadline, data=data, ephemeral=True, make_parents=True
            )
        except NodeExistsError:
            stat = yield from call("exists", node, deadline=deadline)
            if stat is None:
                continue
            sid = yield from session_id()
            if stat.ephemeral_owner != sid:
                raise clash(node) from None
            return sid
        after = yield from session_id()
        if before == after:
            return after
        # The session changed around the create: check whose node it is.


def delete_if_owned(node: str, session: int, deadline: float | None) -> Steps[None]:
    """Delete ``node`` if our ``session`` owns it (never another session's node)."""
    try:
        stat = yield from call("exists", node, deadline=deadline)
        if stat is not None and stat.ephemeral_owner == session:
            yield from call("delete", node, deadline=deadline, version=stat.version)
    except NoNodeError:
        return


def read_members(path: str, children: list[str]) -> Steps[Members]:
    deadline = yield from budget()
    members: Members = {}
    for child in children:
        try:
            data, _stat = yield from call("get", join(path, child), deadline=deadline)
        except NoNodeError:
            continue
        members[child] = data
    return members


def observe_members(path: str) -> Steps[tuple[Members, object]]:
    value: tuple[Members, object] = yield from read_children(path, read_members)
    return value


class GroupCore:
    """Sans-IO steps of one member."""

    def __init__(self, path: str, member_id: str, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"member data must be bytes, got {type(data).__name__}")
        self.path = path
        self.member_id = check_member_id(member_id)
        self.node = join(path, member_id)
        self.data = data
        self.joined = False
        self.session = 0

    def _clash(self, node: str) -> Exception:
        return MemberExistsError(
            f"{node}: member id {self.member_id!r} is taken by another session"
        )

    def join(self) -> Steps[None]:
        deadline = yield from budget()
        self.session = yield from create_owned_ephemeral(
            self.node, self.data, deadline, self._clash
        )
        self.joined = True

    def leave(self) -> Steps[None]:
        self.joined = False
        deadline = yield from budget()
        yield from delete_if_owned(self.node, self.session, deadline)

    def update(self, data: bytes) -> Steps[None]:
        if not isinstance(data, bytes):
            raise TypeError(f"member data must be bytes, got {type(data).__name__}")
        self.data = data
        if self.joined:
            deadline = yield from budget()
            yield from call("set", self.node, data, deadline=deadline)

    def members(self) -> Steps[Members]:
        deadline = yield from budget()
        try:
            children: list[str] = yield from call("get_children", self.path, deadline=deadline)
        except NoNodeError:
            return {}
        value: Members = yield from read_members(self.path, children)
        return value


class GroupMembership:
    """Group membership for the blocking client."""

    def __init__(
        self, client: CoordinatorClient, path: str, member_id: str | None = None, data: bytes = b""
    ) -> None:
        self.client = client
        self.path = path
        self._core = GroupCore(path, uuid.uuid4().hex if member_id is None else member_id, data)
        self.member_id = self._core.member_id
        self._lock = threading.Lock()

    @property
    def is_member(self) -> bool:
        """Joined (and not left); True also while re-joining after a session loss."""
        return self._core.joined

    def join(self) -> None:
        """Join the group (idempotent); raises MemberExistsError on an id clash."""
        with self._lock:
            run_sync(self.client, self._core.join())
        self.client.add_listener(self._listener)

    def leave(self) -> None:
        """Leave the group; stops re-joining."""
        self.client.remove_listener(self._listener)
        with self._lock:
            run_sync(self.client, self._core.leave())

    def update(self, data: bytes) -> None:
        """Replace this member's data (kept for re-joins too)."""
        with self._lock:
            run_sync(self.client, self._core.update(data))

    def members(self) -> Members:
        """Every member's id and data."""
        return run_sync(self.client, self._core.members())

    def watch(self, callback: Callable[[Members], object]) -> Observer[Members]:
        """Call ``callback(members)`` on a background thread now and at every change."""
        path = self.path
        return Observer(self.client, lambda: observe_members(path), callback, f"group-watch {path}")

    def _listener(self, state: ConnectionState) -> None:
        if state is ConnectionState.CONNECTED and self._core.joined:
            # A new session: our node died with the old one. Not on the callback thread.
            threading.Thread(
                target=self._rejoin, name=f"rejoin {self._core.node}", daemon=True
            ).start()

    def _rejoin(self) -> None:
        with self._lock:
            if not self._core.joined:
                return
            try:
                run_sync(self.client, self._core.join())
            except MemberExistsError as exc:
                self._core.joined = False
                logger.warning("cannot re-join %s: %s", self.path, exc)
            except TRANSIENT as exc:
                logger.warning("re-joining %s failed: %s", self.path, exc)

    def __enter__(self) -> GroupMembership:
        self.join()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()


class AsyncGroupMembership:
    """The trio form of ``GroupMembership``; ``watch()`` is an async context manager
    yielding an async iterator of member maps."""

    def __init__(
        self,
        client: AsyncCoordinatorClient,
        path: str,
        member_id: str | None = None,
        data: bytes = b"",
    ) -> None:
        self.client = client
        self.path = path
        self._core = GroupCore(path, uuid.uuid4().hex if member_id is None else member_id, data)
        self.member_id = self._core.member_id
        self._lock = trio.Lock()

    @property
    def is_member(self) -> bool:
        return self._core.joined

    async def join(self) -> None:
        async with self._lock:
            await run_async(self.client, self._core.join())
        self.client.add_listener(self._listener)

    async def leave(self) -> None:
        self.client.remove_listener(self._listener)
        async with self._lock:
            await run_async(self.client, self._core.leave())

    async def update(self, data: bytes) -> None:
        async with self._lock:
            await run_async(self.client, self._core.update(data))

    async def members(self) -> Members:
        return await run_async(self.client, self._core.members())

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[ChangeStream[Members]]:
        """``async with group.watch() as changes: async for members in changes``."""
        path = self.path
        async with observe(self.client, lambda: observe_members(path)) as changes:
            yield changes

    def _listener(self, state: ConnectionState) -> None:
        if state is ConnectionState.CONNECTED and self._core.joined:
            trio.lowlevel.spawn_system_task(self._rejoin, name=f"rejoin {self._core.node}")

    async def _rejoin(self) -> None:
        async with self._lock:
            if not self._core.joined:
                return
            try:
                await run_async(self.client, self._core.join())
            except MemberExistsError as exc:
                self._core.joined = False
                logger.warning("cannot re-join %s: %s", self.path, exc)
            except TRANSIENT as exc:
                logger.warning("re-joining %s failed: %s", self.path, exc)

    async def __aenter__(self) -> AsyncGroupMembership:
        await self.join()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()
