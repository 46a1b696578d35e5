"""A consumer-group member in a process of its own (tests/groups/test_consumer_groups.py).

    python -m tests.groups.consumer_child BOOTSTRAP GROUP TOPIC OUT_FILE

It consumes TOPIC in GROUP with the blocking ``Consumer`` and appends to OUT_FILE,
flushed line by line (``t`` is ``time.time()``, partitions comma-separated):

    A t p,p     the assign callback ran for these partitions
    V t p,p     the revoke callback ran (after committing what was processed)
    L t p,p     the lose callback ran
    R p o       record (p, o) was processed
    C p o       a commit of offset o (the next to consume) of p succeeded
    E message   a commit failed

After each poll it writes the records' R lines, commits their positions, and
writes the C lines. SIGTERM closes the consumer (leaving the group) and exits 0.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import TextIO

from client import CommitFailedError, Consumer, RebalanceListener, TopicPartition


class Recorder(RebalanceListener):
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.consumer: Consumer | None = None
        self.processed: dict[TopicPartition, int] = {}

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, kind: str, partitions: set[TopicPartition]) -> None:
        parts = ",".join(str(tp.partition) for tp in sorted(partitions))
        self.line(f"{kind} {time.time():.3f} {parts}")

    def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit the next offsets of what was processed (of ``partitions``)."""
        if self.consumer is None:
            return
        offsets = {
            tp: o for tp, o in self.processed.items() if partitions is None or tp in partitions
        }
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            self.line(f"E {exc}")
            return
        for tp, o in sorted(offsets.items()):
            self.line(f"C {tp.partition} {o}")

    def on_partitions_assigned(self, partitions: set[TopicPartition]) -> None:
        self.event("A", partitions)

    def on_partitions_revoked(self, partitions: set[TopicPartition]) -> None:
        self.commit(partitions)  # a callback may call the consumer: it runs in poll()
        for tp in partitions:
            self.processed.pop(tp, None)
        self.event("V", partitions)

    def on_partitions_lost(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.processed.pop(tp, None)
        self.event("L", partitions)


def main(argv: list[str]) -> int:
    bootstrap, group, topic, path = argv
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(path, "a", encoding="utf-8") as out:
        recorder = Recorder(out)
        consumer = Consumer(
            bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=50,
        )
        recorder.consumer = consumer
        consumer.subscribe([topic], listener=recorder)
        while not stop:
            records = consumer.poll(timeout=0.2)
            for r in records:
                recorder.line(f"R {r.partition} {r.offset}")
                recorder.processed[TopicPartition(r.topic, r.partition)] = r.offset + 1
            if records:
                recorder.commit({TopicPartition(r.topic, r.partition) for r in records})
        consumer.close()
        recorder.line(f"X {time.time():.3f} closed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
