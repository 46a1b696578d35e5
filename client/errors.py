"""Errors raised by the clients themselves (not answered by a broker).

Server error codes raise the classes of ``client.protocol`` (one per code, each
knowing whether it is ``retriable``); these are the client-side failures:
timeouts, closed clients, unreachable clusters. Bad arguments raise plain
``ValueError``/``TypeError`` before anything is sent.
"""

from __future__ import annotations

from typing import ClassVar

from client.wire import RivuletError


class ClientError(RivuletError):
    """Base of the errors a client raises on its own."""

    retriable: ClassVar[bool] = False


class ClientTimeoutError(ClientError, TimeoutError):
    """An operation did not complete within its configured time limit."""

    retriable = True


class MetadataTimeoutError(ClientTimeoutError):
    """Topic metadata (its partitions and leaders) was not available in time."""


class BufferExhaustedError(ClientTimeoutError):
    """The producer's ``buffer_memory`` stayed full for ``max_block_ms``."""


class DeliveryTimeoutError(ClientTimeoutError):
    """A record was not acknowledged within ``delivery_timeout_ms``."""


class ResponseTimeoutError(ClientTimeoutError):
    """A broker did not answer a request within ``request_timeout_ms``."""


class NoBrokersAvailableError(ClientError):
    """No broker of the bootstrap list (nor any known broker) could be reached."""

    retriable = True


class ClientClosedError(ClientError):
    """The client was closed; no further calls are accepted."""


class RecordTooLargeError(ClientError, ValueError):
    """A record larger than ``max_request_size`` or ``buffer_memory``."""


class NoOffsetForPartitionError(ClientError):
    """A partition has no position and ``auto_offset_reset`` is ``"none"``."""


class IllegalStateError(ClientError):
    """A call that the client's current state does not allow (e.g. seeking an
    unassigned partition)."""


__all__ = [
    "BufferExhaustedError",
    "ClientClosedError",
    "ClientError",
    "ClientTimeoutError",
    "DeliveryTimeoutError",
    "IllegalStateError",
    "MetadataTimeoutError",
    "NoBrokersAvailableError",
    "NoOffsetForPartitionError",
    "RecordTooLargeError",
    "ResponseTimeoutError",
]
