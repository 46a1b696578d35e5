"""Hands out producer ids, claiming blocks of them from the coordinator (trio shell).

The allocation rules live in broker.producer_id_blocks; this module performs
the compare-and-set on ``/producer_id_block`` when the local block runs out.
One claim at a time: concurrent InitProducerId requests wait for it.
"""

from __future__ import annotations

import logging

import trio

from broker.producer_id_blocks import ProducerIdBlock, next_block
from broker.znodes import PRODUCER_ID_BLOCK, ProducerIdBlockData
from coordinator.client import AsyncCoordinatorClient
from coordinator.errors import BadVersionError, NodeExistsError, NoNodeError

logger = logging.getLogger(__name__)


class ProducerIdManager:
    def __init__(self, zk: AsyncCoordinatorClient, broker_id: int, block_size: int) -> None:
        self.zk = zk
        self.broker_id = broker_id
        self.block_size = block_size
        self.block = ProducerIdBlock()
        self._lock = trio.Lock()

    async def next_id(self) -> int:
        pid = self.block.take()
        if pid is not None:
            return pid
        async with self._lock:
            while True:
                pid = self.block.take()
                if pid is not None:
                    return pid
                self.block.install(await self._claim_block())

    async def _claim_block(self) -> ProducerIdBlockData:
        zk = self.zk
        while True:
            try:
                data, stat = await zk.get(PRODUCER_ID_BLOCK)
            except NoNodeError:
                block = next_block(None, self.broker_id, self.block_size)
                try:
                    await zk.create(PRODUCER_ID_BLOCK, block.to_bytes())
                except NodeExistsError:
                    continue
                return self._claimed(block)
            current = ProducerIdBlockData.from_bytes(data) if data else None
            block = next_block(current, self.broker_id, self.block_size)
            try:
                await zk.set(PRODUCER_ID_BLOCK, block.to_bytes(), stat.version)
            except BadVersionError:
                continue  # another broker claimed one meanwhile
            return self._claimed(block)

    def _claimed(self, block: ProducerIdBlockData) -> ProducerIdBlockData:
        logger.info("claimed producer ids [%d, %d)", block.start, block.end)
        return block
