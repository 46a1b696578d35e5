"""Child process for crash tests: append batches with flush=every, print each ack."""

from __future__ import annotations

import sys

from broker.log import FileCache, Log, LogConfig
from client.records import Record, encode_batch


def value_for(offset: int) -> bytes:
    return b"%d:" % offset + b"x" * (offset * 37 % 3000)


def main() -> None:
    data_dir = sys.argv[1]
    cfg = LogConfig(segment_bytes=64 * 1024, index_interval_bytes=1024, flush="every")
    lg = Log.open(data_dir, "crash", 0, cfg, FileCache(16))
    out = sys.stdout
    out.write(f"start {lg.log_end_offset}\n")
    out.flush()
    while True:
        o = lg.log_end_offset
        r = lg.append(encode_batch([Record(o, b"k%d" % o, value_for(o))]), 0, o)
        out.write(f"{r.base_offset}\n")
        out.flush()


if __name__ == "__main__":
    main()
