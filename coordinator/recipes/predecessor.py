"""Waiting for one's turn in a queue of sequential nodes, without a herd.

ZooKeeper's lock recipe: every contender creates an ephemeral-sequential node
and, instead of watching the whole child list (which wakes every waiter on
every change — the herd effect), watches only the one node that blocks it,
usually its predecessor. When that node goes, exactly one waiter wakes, lists
the children once, and either proceeds or watches its new blocker.

The waiter is also woken by any connection state change, so a session that
expired while waiting (its node is gone, its watches with it) is noticed at
once rather than at the deadline.
"""

from __future__ import annotations

from collections.abc import Callable

from coordinator.errors import NoNodeError
from coordinator.recipes._ops import Steps, Wait, call, join, watch_call
from coordinator.recipes.protected import in_sequence_order, unprotected

# blocker(queue, index) -> the node that must go before queue[index] may proceed,
# or None when it may proceed now. ``queue`` is in sequence order.
Blocker = Callable[[list[str], int], str | None]


def immediate_predecessor(queue: list[str], index: int) -> str | None:
    """Exclusive access: wait for the node just before ours."""
    return queue[index - 1] if index > 0 else None


def nearest_preceding(prefix: str, ignore: Callable[[str], bool] = lambda _c: False) -> Blocker:
    """Shared access: wait for the nearest earlier node whose name starts with
    ``prefix`` (a reader waits only for the last writer ahead of it)."""

    def blocker(queue: list[str], index: int) -> str | None:
        for child in reversed(queue[:index]):
            if unprotected(child).startswith(prefix) and not ignore(child):
                return child
        return None

    return blocker


def wait_for_turn(
    parent: str,
    name: str,
    prefixes: tuple[str, ...],
    blocker: Blocker,
    *,
    blocking: bool,
    deadline: float | None,
    check_cancelled: Callable[[], None],
) -> Steps[bool | None]:
    """Wait until ``blocker`` lets our node ``name`` under ``parent`` proceed.

    Returns True when it may proceed, False at the deadline (or at once when
    not ``blocking``), None when our node is gone (the session expired: the
    caller creates a new one). ``check_cancelled()`` runs at every wake-up; it
    raises the caller's own exception when the wait was cancelled.
    """
    while True:
        check_cancelled()
        try:
            children: list[str] = yield from call("get_children", parent, deadline=deadline)
        except NoNodeError:
            return None
        queue = in_sequence_order(children, prefixes)
        if name not in queue:
            return None
        target = blocker(queue, queue.index(name))
        if target is None:
            return True
        if not blocking:
            return False
        stat, waiter = yield from watch_call("exists", join(parent, target), deadline=deadline)
        if stat is None:
            continue  # gone already: look again
        # After the waiter exists: a cancel() from now on changes its generation.
        check_cancelled()
        woke: bool = yield Wait(waiter, deadline)
        if not woke:
            return False
