"""Which ``__consumer_offsets`` partition (and so which broker) coordinates a group.

Kafka's rule, so a group maps to the same partition as it would in Kafka:
``abs(groupId.hashCode()) % N`` with Java's ``String.hashCode`` (over UTF-16
code units, 32-bit wrap-around) and Kafka's ``Utils.abs`` (``h & 0x7fffffff``).
Python's own ``hash`` of a string is randomised per process and must never be
used for this.
"""

from __future__ import annotations


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def group_partition(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group_id`` among ``partitions``."""
    if partitions < 1:
        raise ValueError(f"the offsets topic needs at least one partition, got {partitions}")
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partitions
