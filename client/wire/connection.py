"""A framed trio connection: batched receive, coalesced non-blocking send."""

from __future__ import annotations

import os
from typing import Any

import trio

from client.wire.frames import DEFAULT_MAX_FRAME, FrameDecoder

_RECEIVE_BYTES = 256 * 1024


class FramedConnection:
    """Owns one trio stream. ``send`` queues a frame and never blocks; the
    ``writer`` task joins everything queued into one ``send_all`` so that many
    pipelined responses cost one system call. ``receive`` returns all messages
    completed by one read (an empty list means the peer closed)."""

    def __init__(
        self, stream: trio.abc.Stream, max_frame: int = DEFAULT_MAX_FRAME, *, resync: bool = False
    ) -> None:
        self.stream = stream
        # Servers resync past an undecodable body; clients treat it as a broken stream.
        self.decoder = FrameDecoder(max_frame, resync=resync)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._wake = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()
        self._closed = False
        self._writing = False
        # A plain TCP stream can be written without the writer task (see flush_nowait).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for the writer and not yet handed to the kernel."""
        return self._out_bytes

    async def receive(self) -> list[Any]:
        """Messages from the next read; ``[]`` at end of stream. Raises ProtocolError."""
        while True:
            data = await self.stream.receive_some(_RECEIVE_BYTES)
            if not data:
                return []
            messages = self.decoder.feed(data)
            if messages:
                return messages

    def send(self, frame: bytes) -> None:
        if self._closed:
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        self._wake.unpark()

    def flush_nowait(self) -> None:
        """Hand everything queued to the kernel now, if the writer is idle.

        Saves the writer task's wake-up on the latency path: a server calls it
        after answering a batch of requests, a client after a lone request.
        Whatever the socket does not take at once stays queued for the writer.
        """
        out = self._out
        if not out or self._writing or self._closed or self._fd < 0:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        try:
            written = os.write(self._fd, data)
        except OSError:
            return  # would block, or broken: the writer task sends or reports it
        if written == len(data):
            self._out = []
            self._out_bytes = 0
            self._drained.unpark_all()
        else:
            self._out = [data[written:]]
            self._out_bytes = len(data) - written

    async def wait_drained(self) -> None:
        """Wait until every queued frame has been written (or the connection closed)."""
        while self._out and not self._closed:
            await self._drained.park()

    async def writer(self) -> None:
        """Run in a nursery for the connection's lifetime; returns when closed."""
        try:
            while not self._closed:
                if not self._out:
                    await self._wake.park()
                    continue
                out = self._out
                self._out = []
                self._out_bytes = 0
                data = out[0] if len(out) == 1 else b"".join(out)
                self._writing = True
                try:
                    await self.stream.send_all(data)
                finally:
                    self._writing = False
                if not self._out:
                    self._drained.unpark_all()
        finally:
            self._closed = True
            self._drained.unpark_all()

    async def aclose(self) -> None:
        self._closed = True
        self._wake.unpark_all()
        self._drained.unpark_all()
        await self.stream.aclose()
