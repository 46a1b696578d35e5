"""Creation that survives connection loss: ZooKeeper's "GUID in the node name".

A create whose connection drops before the answer arrives may or may not have
been applied. Retrying it blindly can leave an orphan: a second lock node that
nobody will ever delete (it belongs to a live session), a duplicated queue item.
So every recipe node is named ``_c_<guid>-<name>`` (Curator's protected mode),
with a guid fresh for each logical create. After an ambiguous failure the client
lists the parent and finds its own node by that prefix; only if it is not there
is the create sent again.

For an ephemeral node the found node must also belong to the current session:
one left behind by an expired session (the server deletes those, but a slow
expiry must not fool us) is deleted and the create repeated. If several nodes
carry the guid (a create applied twice), the one with the lowest sequence is
kept and the others deleted.
"""

from __future__ import annotations

import re
import uuid

from coordinator.errors import NodeExistsError, NoNodeError
from coordinator.recipes._ops import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    RETRIABLE,
    RETRY_BUDGET,
    Call,
    Sleep,
    Steps,
    budget,
    call,
    join,
    session_id,
)

PROTECTED_PREFIX = "_c_"
_GUID_LEN = 32
_PROTECTED = re.compile(r"^_c_([0-9a-f]{32})-(.*)$")
_SEQUENCE = re.compile(r"(\d{10})$")


def new_guid() -> str:
    """A fresh guid for one logical create."""
    return uuid.uuid4().hex


def protected_name(guid: str, name: str) -> str:
    """``_c_<guid>-<name>``."""
    return f"{PROTECTED_PREFIX}{guid}-{name}"


def guid_of(child: str) -> str | None:
    """The guid of a protected node name, or None for an unprotected one."""
    match = _PROTECTED.match(child)
    return match.group(1) if match else None


def unprotected(child: str) -> str:
    """A node name without its ``_c_<guid>-`` prefix."""
    match = _PROTECTED.match(child)
    return match.group(2) if match else child


def sequence_of(child: str) -> int:
    """The 10-digit sequence suffix of a sequential node's name."""
    match = _SEQUENCE.search(child)
    if match is None:
        raise ValueError(f"{child!r} is not a sequential node name")
    return int(match.group(1))


def has_prefix(child: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a (protected) sequential node name is ``<prefix><10 digits>``."""
    name = unprotected(child)
    return any(name.startswith(p) and name[len(p) :].isdigit() for p in prefixes)


def in_sequence_order(children: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The sequential children carrying one of ``prefixes``, lowest sequence first."""
    return sorted((c for c in children if has_prefix(c, prefixes)), key=sequence_of)


def owned(children: list[str], guid: str) -> list[str]:
    """The children created under ``guid``."""
    start = protected_name(guid, "")
    return [c for c in children if c.startswith(start)]


def protected_create(
    parent: str,
    name: str,
    data: bytes,
    *,
    guid: str,
    ephemeral: bool,
    sequential: bool,
    deadline: float | None,
    ttl: float | None = None,
) -> Steps[tuple[str, int]]:
    """Create ``parent/_c_<guid>-<name>`` exactly once despite connection loss.

    Returns the node's actual path and the session it belongs to (for an
    ephemeral node; the current session otherwise). Gives up at ``deadline``
    with the last retriable error.
    """
    path = join(parent, protected_name(guid, name))
    delay = FIRST_BACKOFF
    while True:
        error: Exception
        before = yield from session_id()
        try:
            created: str = yield Call(
                "create",
                (path,),
                {
                    "data": data,
                    "ephemeral": ephemeral,
                    "sequential": sequential,
                    "make_parents": True,
                    "ttl": ttl,
                },
            )
        except NodeExistsError as exc:
            # Only a non-sequential name can collide; the guid makes it ours.
            error = exc
        except RETRIABLE as exc:
            error = exc
        else:
            after = yield from session_id()
            if not ephemeral or before == after:
                return created, after
            # The session changed around the create: whose node is it? Start over.
            yield from delete_quietly(created, deadline=deadline)
            continue
        found = yield from find_protected(parent, guid, ephemeral=ephemeral, deadline=deadline)
        if found is not None:
            return found
        if not (yield Sleep(delay, deadline)):
            raise error
        delay = min(delay * 2, MAX_BACKOFF)


def find_protected(
    parent: str, guid: str, *, ephemeral: bool, deadline: float | None
) -> Steps[tuple[str, int] | None]:
    """Our node under ``parent`` (by guid) and its session, or None; stale copies
    (another session's, or a second copy) are deleted."""
    try:
        children: list[str] = yield from call("get_children", parent, deadline=deadline)
    except NoNodeError:
        return None
    mine = owned(children, guid)
    if not mine:
        return None
    try:
        mine.sort(key=sequence_of)
    except ValueError:
        mine.sort()
    sid = yield from session_id()
    keep: str | None = None
    if ephemeral:
        for child in mine:
            try:
                stat = yield from call("exists", join(parent, child), deadline=deadline)
            except NoNodeError:
                continue
            if stat is not None and stat.ephemeral_owner == sid and keep is None:
                keep = child
    else:
        keep = mine[0]
    for child in mine:
        if child != keep:
            yield from delete_quietly(join(parent, child), deadline=deadline)
    return None if keep is None else (join(parent, keep), sid)


def delete_quietly(path: str, *, deadline: float | None, version: int = -1) -> Steps[None]:
    """Delete ``path``, retrying through connection loss; a missing node is fine."""
    try:
        yield from call("delete", path, deadline=deadline, version=version)
    except NoNodeError:
        return


def delete_owned(
    parent: str, guids: tuple[str, ...], known: tuple[str, ...] = (), timeout: float = RETRY_BUDGET
) -> Steps[None]:
    """Delete the ``known`` paths and every node under ``parent`` created under one
    of ``guids`` — the cleanup after a failed, timed-out or cancelled attempt
    (whose create may have been applied unseen), and a release."""
    deadline = yield from budget(timeout)
    for path in known:
        yield from delete_quietly(path, deadline=deadline)
    if not guids:
        return
    try:
        children: list[str] = yield from call("get_children", parent, deadline=deadline)
    except NoNodeError:
        return
    for guid in guids:
        for child in owned(children, guid):
            path = join(parent, child)
            if path not in known:
                yield from delete_quietly(path, deadline=deadline)
