"""A query run in its own process, for restart and kill -9 tests.

``python -m tests.streaming.query_child rate CKPT OUT TOTAL``: a windowed count of
the rate source into a file sink. ``python -m tests.streaming.query_child topic
CKPT BOOTSTRAP IN_TOPIC OUT_TOPIC``: a windowed count of a topic into a topic.
Both run with an available-now trigger and print ``ready`` once started and
``batch N`` after each committed batch.
"""

from __future__ import annotations

import sys

import polars as pl

from client.streaming import QueryProgress, Stream, StreamingQueryListener, window
from client.streaming import functions as F
from client.streaming.api import DataStreamWriter


class Printer(StreamingQueryListener):
    def on_query_progress(self, progress: QueryProgress) -> None:
        print(f"batch {progress.batch_id}", flush=True)


def rate_query(ckpt: str, out: str, total: int) -> DataStreamWriter:
    return (
        Stream.rate(100, num_partitions=3, rows_per_batch=60, total_rows=total, start_timestamp=0)
        .with_watermark("timestamp", "1 second")
        .group_by(window("timestamp", "2 seconds", "1 second"), (pl.col("value") % 5).alias("k"))
        .agg(F.count().alias("n"), F.sum("value").alias("s"))
        .write_stream.output_mode("append")
        .trigger(available_now=True)
        .to_files(out)
        .checkpoint_location(ckpt)
    )


def topic_query(ckpt: str, bootstrap: str, source: str, sink: str) -> DataStreamWriter:
    return (
        Stream.from_topics(bootstrap, [source], starting_offsets="earliest")
        .value_format("json", schema={"page": "string", "ts": "timestamp"})
        .with_watermark("ts", "1 second")
        .group_by(window("ts", "2 seconds"), "page")
        .agg(F.count().alias("views"))
        .write_stream.output_mode("append")
        .trigger(available_now=True)
        .max_records_per_trigger(50)
        .to_topic(bootstrap, sink, max_batch_bytes=1024)
        .checkpoint_location(ckpt)
    )


def main(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "rate":
        writer = rate_query(argv[1], argv[2], int(argv[3]))
    else:
        writer = topic_query(argv[1], argv[2], argv[3], argv[4])
    query = writer.listener(Printer()).start()
    print("ready", flush=True)
    query.await_termination()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
