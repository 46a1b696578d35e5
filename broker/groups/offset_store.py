"""Committed offsets in memory (sans-IO), rebuilt from and kept in step with the log."""

from __future__ import annotations

from collections.abc import Iterator

from broker.groups.records import OffsetCommitKey, OffsetCommitValue

TopicPartition = tuple[str, int]


class OffsetStore:
    def __init__(self) -> None:
        self._groups: dict[str, dict[TopicPartition, OffsetCommitValue]] = {}

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def groups(self) -> list[str]:
        return list(self._groups)

    def replay(self, key: OffsetCommitKey, value: OffsetCommitValue | None) -> None:
        tp = (key.topic, key.partition)
        if value is None:
            offsets = self._groups.get(key.group_id)
            if offsets is not None:
                offsets.pop(tp, None)
                if not offsets:
                    del self._groups[key.group_id]
        else:
            self._groups.setdefault(key.group_id, {})[tp] = value

    def get(self, group_id: str, topic: str, partition: int) -> OffsetCommitValue | None:
        offsets = self._groups.get(group_id)
        return None if offsets is None else offsets.get((topic, partition))

    def of_group(self, group_id: str) -> dict[TopicPartition, OffsetCommitValue]:
        """The group's offsets (a copy), sorted by topic and partition."""
        return dict(sorted(self._groups.get(group_id, {}).items()))

    def count(self, group_id: str) -> int:
        return len(self._groups.get(group_id, {}))

    def items(self) -> Iterator[tuple[str, dict[TopicPartition, OffsetCommitValue]]]:
        yield from self._groups.items()
