"""Applying the controller's partition-state writes to a metadata cache, as the
watches would, checking the rules every write must keep (shared by the
controller model tests)."""

from __future__ import annotations

from collections.abc import Callable

from broker.controller_plan import NEW_NODE, StateWrite
from broker.metadata_cache import MetadataCache
from broker.znodes import NO_LEADER


def apply_state_writes(
    cache: MetadataCache, writes: list[StateWrite], next_zxid: Callable[[], int]
) -> None:
    """CAS-check each write against the cache, then store it; only clean elections,
    and every leader change bumps the leader epoch by one."""
    for w in writes:
        old = cache.partition(w.topic, w.partition)
        if w.version == NEW_NODE:
            assert old is None
            assert w.state.leader_epoch == 0
            version = 0
        else:
            assert old is not None and old.version == w.version
            assert w.state.leader_epoch >= old.leader_epoch
            if w.state.leader != old.leader:
                assert w.state.leader_epoch == old.leader_epoch + 1
                if w.state.leader != NO_LEADER:
                    assert w.state.leader in old.isr, "unclean election"
            version = w.version + 1
        cache.set_state(w.topic, w.partition, w.state, version, next_zxid())
