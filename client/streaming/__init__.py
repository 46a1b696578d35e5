"""Rivulet's micro-batch streaming engine (Spark Structured Streaming's model).

Read ``docs/streaming.md`` for the model, the guarantees and examples::

    import polars as pl
    from client.streaming import Stream, window, functions as F

    query = (
        Stream.rate(rows_per_second=1000)
        .with_watermark("timestamp", "5 seconds")
        .group_by(window("timestamp", "10 seconds"), (pl.col("value") % 10).alias("k"))
        .agg(F.count().alias("n"))
        .write_stream.output_mode("append")
        .to_memory("counts")
        .option("checkpoint_location", "/tmp/ckpt")
        .start()
    )
"""

from client.streaming import functions
from client.streaming.api import (
    DataStreamReader,
    DataStreamWriter,
    GroupedStream,
    Stream,
    StreamingSession,
)
from client.streaming.engine import (
    MicroBatchEngine,
    QueryOptions,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)
from client.streaming.errors import (
    AnalysisError,
    CheckpointError,
    CheckpointLockedError,
    DataLossError,
    SinkError,
    StreamingError,
    StreamingQueryError,
    TaskFailedError,
)
from client.streaming.progress import (
    QueryProgress,
    QueryStatus,
    SinkProgress,
    SourceProgress,
    StateOperatorProgress,
)
from client.streaming.query import AsyncStreamingQuery, StreamingQuery
from client.streaming.sinks import (
    ConsoleSink,
    FileSink,
    ForeachBatchSink,
    MemorySink,
    Sink,
    TopicSink,
    drop_memory_table,
    memory_table,
    read_file_sink,
)
from client.streaming.sources import RateSource, Source, TopicSource
from client.streaming.triggers import AvailableNow, Once, ProcessingTime
from client.streaming.windows import SessionWindow, TimeWindow, session_window, window

__all__ = [
    "AnalysisError",
    "AsyncStreamingQuery",
    "AvailableNow",
    "CheckpointError",
    "CheckpointLockedError",
    "ConsoleSink",
    "DataLossError",
    "DataStreamReader",
    "DataStreamWriter",
    "FileSink",
    "ForeachBatchSink",
    "GroupedStream",
    "MemorySink",
    "MicroBatchEngine",
    "Once",
    "ProcessingTime",
    "QueryOptions",
    "QueryProgress",
    "QueryStartedEvent",
    "QueryStatus",
    "QueryTerminatedEvent",
    "RateSource",
    "SessionWindow",
    "Sink",
    "SinkError",
    "SinkProgress",
    "Source",
    "SourceProgress",
    "StateOperatorProgress",
    "Stream",
    "StreamingError",
    "StreamingQuery",
    "StreamingQueryError",
    "StreamingQueryListener",
    "StreamingSession",
    "TaskFailedError",
    "TimeWindow",
    "TopicSink",
    "TopicSource",
    "drop_memory_table",
    "functions",
    "memory_table",
    "read_file_sink",
    "session_window",
    "window",
]
