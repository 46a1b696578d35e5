"""Leader-epoch arithmetic (sans-IO): the leader's answer to OffsetForLeaderEpoch, and
the follower's truncation decision (Kafka KIP-101 and KIP-279).

Every record batch carries the leader epoch it was written in, and each replica
keeps epoch -> start offset. When a replica starts following a new leader it
asks for the end offset of its own latest epoch in the leader's log, and cuts
its log where the two diverge — never simply at its high watermark, which may
be behind (losing committed records on a later leader change) or ahead of what
the new leader has.

The leader's epoch cache only learns a new epoch with the first batch written
in it, so a leader that has not appended yet answers as if its current epoch
started at its log end (Kafka writes that entry when the broker becomes
leader; we derive it, which keeps the cache untouched outside the log's lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


def leader_end_offset(
    requested: int,
    current_epoch: int,
    cached: tuple[int, int],
    latest_cached: int,
    log_end_offset: int,
) -> tuple[int, int]:
    """OffsetForLeaderEpoch on the leader: (largest epoch <= ``requested``, where it ends).

    ``cached`` is the log's own answer for ``requested`` and ``latest_cached`` its
    newest epoch; ``current_epoch`` is the epoch this broker leads in (which the
    cache may not know yet: then it starts at ``log_end_offset``).
    """
    if requested == UNDEFINED_EPOCH or requested > current_epoch:
        return UNDEFINED_EPOCH, UNDEFINED_OFFSET
    if requested == current_epoch:
        return current_epoch, log_end_offset
    if latest_cached >= current_epoch:
        return cached
    # The current epoch has no batch yet: it starts at the log end.
    if cached[0] != UNDEFINED_EPOCH:
        return cached
    if latest_cached == UNDEFINED_EPOCH:
        # No epoch at all below the current one: the requested one ends where ours starts.
        return requested, log_end_offset
    # ``requested`` is above every cached epoch: the newest cached epoch ends at the log end.
    return latest_cached, log_end_offset


@dataclass(frozen=True, slots=True)
class Truncation:
    """Where a follower cuts its log, and whether it must ask the leader again."""

    offset: int
    complete: bool


def truncation(
    local_start: int,
    local_end: int,
    requested: int,
    leader_answer: tuple[int, int],
    local_end_for: Callable[[int], tuple[int, int]],
) -> Truncation:
    """The follower's decision after asking the leader about its epoch ``requested``.

    ``local_end_for(epoch)`` is the follower's own OffsetForLeaderEpoch answer.
    Kafka's algorithm: if the leader answers with an epoch the follower also has,
    cut where the shorter of the two ends; if the follower does not know that
    epoch, cut where its own nearest older epoch ends and ask again.
    """
    leader_epoch, leader_end = leader_answer
    if requested == UNDEFINED_EPOCH or leader_epoch == UNDEFINED_EPOCH:
        # No epoch to compare: keep nothing that could diverge, fetch it all again.
        return Truncation(local_start, True)
    follower_epoch, follower_end = local_end_for(leader_epoch)
    if follower_epoch == UNDEFINED_EPOCH:
        return Truncation(max(local_start, min(leader_end, local_end)), True)
    if follower_epoch != leader_epoch:
        return Truncation(max(local_start, min(follower_end, local_end)), False)
    return Truncation(max(local_start, min(leader_end, follower_end, local_end)), True)
