"""Child process for the kill -9 test of coordinator.txnlog.

Usage: python txnlog_crash_child.py DIRECTORY SEED

Opens (and so recovers) the log, then appends records with consecutive zxids
from one thread while the main thread syncs in a loop, as the coordinator does
(event loop appends, worker thread fsyncs). After every sync it prints the zxid
that sync made durable (when it advanced) and flushes, so the parent knows what
was acknowledged.
It runs until it is killed.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

MAX_UNSYNCED = 2000  # back-pressure: the appender waits when this far ahead of sync


def payload_for(zxid: int) -> bytes:
    """The record for ``zxid``: deterministic, of varying size (0 to ~3 KB)."""
    size = (zxid * 7919) % 3001 if zxid % 10 == 0 else (zxid * 31) % 97
    return (zxid.to_bytes(8, "big") * (size // 8 + 1))[:size]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from coordinator.txnlog import TxnLog

    directory = Path(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    log = TxnLog.open(directory, file_bytes=64 * 1024)
    progress = threading.Condition()

    def appender() -> None:
        zxid = log.last_zxid
        while True:
            with progress:
                progress.wait_for(lambda: log.last_zxid - log.durable_zxid < MAX_UNSYNCED)
            for _ in range(rng.randrange(1, 50)):
                zxid += 1
                log.append(zxid, payload_for(zxid))
            if rng.random() < 0.02:
                log.roll()

    threading.Thread(target=appender, daemon=True).start()
    out = sys.stdout
    printed = 0
    while True:
        durable = log.sync()
        with progress:
            progress.notify_all()
        if durable > printed:
            out.write(f"{durable}\n")
            out.flush()
            printed = durable


if __name__ == "__main__":
    main()
