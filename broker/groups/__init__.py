"""Consumer groups: the group coordinator and the committed-offset store (DESIGN §7).

Layout: ``records`` (the ``__consumer_offsets`` record formats), ``assignors``
(uniform sticky and range), ``group_state`` (one group's members, epochs and
reconciliation), ``offset_store`` (committed offsets), ``shard`` (the sans-IO
coordinator of one ``__consumer_offsets`` partition), ``coordinator`` (the trio
shell that loads shards, writes their records and runs their timers).
"""

from broker.groups.partitioning import group_partition, java_string_hash

__all__ = ["group_partition", "java_string_hash"]
