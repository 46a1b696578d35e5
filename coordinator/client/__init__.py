"""The coordinator client: kazoo-shaped blocking and trio APIs.

from coordinator.client import CoordinatorClient, open_coordinator

with CoordinatorClient("127.0.0.1:2181") as zk:
    zk.create("/app/config", b"v1", make_parents=True)

async with open_coordinator("127.0.0.1:2181") as zk:
    data, stat = await zk.get("/app/config")
"""

from coordinator.client.async_client import (
    AsyncCoordinatorClient,
    AsyncTransaction,
    WatchStream,
    fetch_server_stat,
    open_coordinator,
)
from coordinator.client.blocking_client import CoordinatorClient, Transaction
from coordinator.client.connection_state import ConnectionState
from coordinator.client.retry import RetryPolicy
from coordinator.client.transaction import TransactionResult
from coordinator.protocol import EventType, Stat, WatchedEvent

__all__ = [
    "AsyncCoordinatorClient",
    "AsyncTransaction",
    "ConnectionState",
    "CoordinatorClient",
    "EventType",
    "RetryPolicy",
    "Stat",
    "Transaction",
    "TransactionResult",
    "WatchStream",
    "WatchedEvent",
    "fetch_server_stat",
    "open_coordinator",
]
