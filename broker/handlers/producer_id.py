"""INIT_PRODUCER_ID: a new idempotent producer id, or the next epoch of an existing one.

Without a transactional id (transactions are not supported), an existing
(producer_id, producer_epoch) asks for an epoch bump, as Kafka's KIP-360 lets an
idempotent producer do after a fatal sequence error; when the epoch would
overflow the producer gets a new id at epoch 0.
"""

from __future__ import annotations

from typing import Any

from broker.producer_id_blocks import MAX_PRODUCER_EPOCH, bumped_epoch
from broker.producer_id_manager import ProducerIdManager
from client.wire import InvalidRequestError, Payload

_INT64_MAX = 2**63 - 1


class InitProducerIdHandler:
    def __init__(self, manager: ProducerIdManager) -> None:
        self.manager = manager

    async def __call__(self, p: Payload) -> dict[str, Any]:
        if p.raw("transactional_id", None) is not None:
            raise InvalidRequestError("transactions are not supported; send transactional_id nil")
        producer_id = p.integer("producer_id", -1, lo=-1, hi=_INT64_MAX)
        producer_epoch = p.integer("producer_epoch", -1, lo=-1, hi=MAX_PRODUCER_EPOCH)
        if producer_id >= 0 and producer_epoch >= 0:
            epoch = bumped_epoch(producer_epoch)
            if epoch is not None:
                return {"producer_id": producer_id, "producer_epoch": epoch}
        return {"producer_id": await self.manager.next_id(), "producer_epoch": 0}
