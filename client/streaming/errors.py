"""Exceptions of the streaming engine.

Bad arguments to the builder raise plain ``ValueError``/``TypeError`` when the
query is defined (before anything runs), as Spark's analysis errors do; the
classes here describe failures of a running query and of its checkpoint.
"""

from __future__ import annotations

from client.wire import RivuletError


class StreamingError(RivuletError):
    """Base of the streaming engine's own errors."""


class AnalysisError(StreamingError, ValueError):
    """The query cannot run as defined (e.g. append mode on an aggregation
    without a watermark, or a sink that does not support the output mode)."""


class CheckpointError(StreamingError):
    """The checkpoint directory is unreadable, inconsistent or written by an
    incompatible query."""


class CheckpointLockedError(CheckpointError):
    """Another running query holds the checkpoint directory."""


class DataLossError(StreamingError):
    """Offsets the query still needs are no longer in the topic (deleted by
    retention) and ``fail_on_data_loss`` is on."""


class TaskFailedError(StreamingError):
    """A task failed on every attempt; ``__cause__`` is its last error."""

    def __init__(self, message: str, *, task: str, attempts: int) -> None:
        super().__init__(message)
        self.task = task
        self.attempts = attempts


class StreamingQueryError(StreamingError):
    """The query terminated with an error; ``cause`` (also ``__cause__``) is it.

    ``await_termination`` raises this; ``query.exception`` holds it.
    """

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause
        self.__cause__ = cause


class SinkError(StreamingError):
    """A sink could not write a batch (after its own retries)."""


__all__ = [
    "AnalysisError",
    "CheckpointError",
    "CheckpointLockedError",
    "DataLossError",
    "SinkError",
    "StreamingError",
    "StreamingQueryError",
    "TaskFailedError",
]
