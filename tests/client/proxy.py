"""A frame-aware TCP proxy in front of a broker that can lose produce answers.

It forwards every frame both ways, rewrites METADATA answers so that clients
keep talking to the proxy (not to the broker's advertised address), and, while
``drop_produce_answers`` is positive, closes the client's connection when an
answer to a PRODUCE arrives from the broker instead of forwarding it: the
write happened but the producer never hears about it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

from client.protocol import ApiKey
from client.wire import FrameDecoder, encode_frame


class FaultProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target_host = host
        self.target_port = int(port)
        self.port = 0
        self.drop_produce_answers = 0
        self.dropped = 0
        self.produce_requests = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(self.target_host, self.target_port)
        apis: dict[int, int] = {}
        async with client, upstream, trio.open_nursery() as nursery:

            async def client_to_broker() -> None:
                decoder = FrameDecoder()
                while data := await client.receive_some(65536):
                    for message in decoder.feed(data):
                        api, _version, xid, _payload = message
                        apis[xid] = api
                        if api == ApiKey.PRODUCE:
                            self.produce_requests += 1
                        await upstream.send_all(encode_frame(message))
                nursery.cancel_scope.cancel()

            async def broker_to_client() -> None:
                decoder = FrameDecoder()
                while data := await upstream.receive_some(65536):
                    for message in decoder.feed(data):
                        xid, code, payload = message
                        api = apis.pop(xid, None)
                        if api == ApiKey.PRODUCE and self.drop_produce_answers > 0:
                            self.drop_produce_answers -= 1
                            self.dropped += 1
                            nursery.cancel_scope.cancel()
                            return
                        if api == ApiKey.METADATA and not code:
                            for broker in payload.get("brokers") or ():
                                broker["host"], broker["port"] = "127.0.0.1", self.port
                        await client.send_all(encode_frame([xid, code, payload]))
                nursery.cancel_scope.cancel()

            nursery.start_soon(client_to_broker)
            nursery.start_soon(broker_to_client)


@contextmanager
def proxy_thread(target: str) -> Iterator[FaultProxy]:
    """Run a FaultProxy in a background thread (for the blocking clients)."""
    proxy = FaultProxy(target)
    ready = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    stop: list[trio.Event] = []

    async def main() -> None:
        stop.append(trio.Event())
        token.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            ready.set()
            await stop[0].wait()
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("proxy did not start")
    try:
        yield proxy
    finally:
        token[0].run_sync_soon(stop[0].set)
        thread.join(10)
