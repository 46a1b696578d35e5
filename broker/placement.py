"""Replica placement for new topics (Kafka's AdminUtils assignment, sans-IO).

Leaders go round-robin over the brokers from a random start; followers are
shifted by a second random amount that grows once per lap so replicas of the
same leader do not always land on the same followers. When brokers carry racks,
the broker list alternates racks and each partition's replicas take a new rack
until every rack has one. The caller supplies the two random numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from client.protocol import InvalidPartitionsError, InvalidReplicationFactorError

MAX_PARTITIONS = 100_000


def assign_replicas(
    num_partitions: int,
    replication_factor: int,
    brokers: Mapping[int, str],
    start_index: int,
    replica_shift: int,
) -> dict[int, list[int]]:
    """Partition -> replicas (first one the preferred leader) for ``brokers`` (id -> rack)."""
    if not 1 <= num_partitions <= MAX_PARTITIONS:
        raise InvalidPartitionsError(
            f"number of partitions must be in [1, {MAX_PARTITIONS}], got {num_partitions}"
        )
    if replication_factor < 1:
        raise InvalidReplicationFactorError(
            f"replication factor must be at least 1, got {replication_factor}"
        )
    if replication_factor > len(brokers):
        raise InvalidReplicationFactorError(
            f"replication factor {replication_factor} is larger than the "
            f"{len(brokers)} available broker(s)"
        )
    arranged = rack_alternated(brokers)
    n = len(arranged)
    racks = {brokers[b] for b in arranged}
    num_racks = len(racks)
    start = start_index % n
    shift = replica_shift % n
    out: dict[int, list[int]] = {}
    for partition in range(num_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start) % n
        leader = arranged[first]
        replicas = [leader]
        used_racks = {brokers[leader]}
        used = {leader}
        k = 0
        while len(replicas) < replication_factor:
            broker = arranged[_replica_index(first, shift * num_racks, k, n)]
            k += 1
            rack = brokers[broker]
            if (rack not in used_racks or len(used_racks) == num_racks) and broker not in used:
                replicas.append(broker)
                used_racks.add(rack)
                used.add(broker)
        out[partition] = replicas
    return out


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    return (first + 1 + (shift + j) % (n - 1)) % n if n > 1 else first


def rack_alternated(brokers: Mapping[int, str]) -> list[int]:
    """Broker ids ordered so that consecutive ones are on different racks where possible."""
    by_rack: dict[str, list[int]] = {}
    for broker_id in sorted(brokers):
        by_rack.setdefault(brokers[broker_id], []).append(broker_id)
    racks = sorted(by_rack)
    out: list[int] = []
    depth = 0
    while len(out) < len(brokers):
        for rack in racks:
            members = by_rack[rack]
            if depth < len(members):
                out.append(members[depth])
        depth += 1
    return out
