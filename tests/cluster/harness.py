"""A multi-broker cluster of real processes on 127.0.0.1 for the cluster tests.

One coordinator process and N brokers (``--coordinator ADDR --id N``), each
broker on a port chosen at its first start and kept across restarts, data under
one temporary directory. Short session timeouts so that failures are noticed in
about two seconds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from client.protocol import ERRORS, ApiKey
from client.wire import RivuletError, RpcChannel
from tests.procs import BROKER_READY, ServerProcess, broker_argv, coordinator_argv

SESSION_TIMEOUT_MS = 2000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, root: Path, size: int, *extra: str) -> None:
        self.root = root
        self.size = size
        self.extra = extra
        self.coordinator: ServerProcess | None = None
        self.brokers: dict[int, ServerProcess] = {}
        self.ports: dict[int, int] = {}
        self.retired: list[ServerProcess] = []

    # ------------------------------------------------------------ processes

    def start(self) -> Cluster:
        self.coordinator = ServerProcess(coordinator_argv(self.root / "coordinator")).start()
        for i in range(self.size):
            self.start_broker(i)
        return self

    def argv(self, broker: int, *more: str) -> list[str]:
        if self.coordinator is None:
            raise RuntimeError("start the coordinator first")
        port = self.ports.setdefault(broker, free_port())
        return broker_argv(
            self.root / f"broker{broker}",
            "--coordinator",
            self.coordinator.address,
            "--id",
            str(broker),
            "--session-timeout-ms",
            str(SESSION_TIMEOUT_MS),
            "--replica-lag-time-max-ms",
            "3000",
            "--replica-fetch-backoff-ms",
            "100",
            "--controlled-shutdown-timeout-ms",
            "10000",
            "--default-replication-factor",
            str(min(3, self.size)),
            "--log-level",
            "INFO",
            *self.extra,
            *more,
            port=port,
        )

    def start_broker(self, broker: int, *more: str) -> ServerProcess:
        old = self.brokers.get(broker)
        if old is not None:
            self.retired.append(old)
        proc = ServerProcess(self.argv(broker, *more), ready=BROKER_READY)
        self.brokers[broker] = proc
        for attempt in range(3):
            try:
                return proc.start(timeout=60)
            except RuntimeError:
                # The kept port may still be held by the dead process's socket; retry.
                if attempt == 2:
                    raise
                time.sleep(1.0)
                proc = ServerProcess(self.argv(broker, *more), ready=BROKER_READY)
                self.brokers[broker] = proc
        return proc

    def kill(self, broker: int) -> None:
        self.brokers[broker].kill()

    def stop_broker(self, broker: int) -> int | None:
        return self.brokers[broker].stop(timeout=30)

    def pause(self, broker: int) -> None:
        self.brokers[broker].pause()

    def resume(self, broker: int) -> None:
        self.brokers[broker].resume()

    def alive(self, broker: int) -> bool:
        proc = self.brokers[broker].proc
        return proc is not None and proc.poll() is None

    def stop(self) -> None:
        for proc in self.brokers.values():
            proc.resume()
            proc.stop(timeout=30)
        if self.coordinator is not None:
            self.coordinator.stop()

    def output(self, broker: int) -> str:
        outputs = [p.output() for p in self.retired if p.argv == self.brokers[broker].argv]
        return "".join(outputs) + self.brokers[broker].output()

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports[b]}" for b in sorted(self.ports))

    def address(self, broker: int) -> str:
        return f"127.0.0.1:{self.ports[broker]}"


async def call(address: str, api: int, payload: Any, timeout: float = 10.0) -> Any:
    """One request on a fresh connection."""
    host, port = address.rsplit(":", 1)
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, int(port))
        channel = RpcChannel(stream, ERRORS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.run)
            try:
                return await channel.call(api, 0, payload)
            finally:
                await channel.aclose()
                nursery.cancel_scope.cancel()


async def partition_state(address: str, topic: str, partition: int) -> dict[str, Any]:
    meta = await call(
        address, ApiKey.METADATA, {"topics": [topic], "allow_auto_topic_creation": False}
    )
    for t in meta["topics"]:
        for p in t["partitions"]:
            if p["partition"] == partition:
                result: dict[str, Any] = p
                return result
    raise KeyError(f"{topic}-{partition}")


async def wait_for(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Await ``check()`` (a coroutine function) until it returns something truthy."""
    deadline = trio.current_time() + timeout
    last: Any = None
    while trio.current_time() < deadline:
        try:
            last = await check()
        except (OSError, trio.TooSlowError, KeyError, RivuletError) as exc:
            last = exc
        else:
            if last:
                return last
        await trio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def led_state(address: str, topic: str, partition: int, timeout: float = 15.0) -> Any:
    """The partition's state as ``address`` sees it, once it has a leader and a full ISR."""

    async def ready() -> dict[str, Any] | None:
        state = await partition_state(address, topic, partition)
        full = sorted(state["isr"]) == sorted(state["replicas"])
        return state if state["leader"] >= 0 and full else None

    return await wait_for(ready, timeout, f"{topic}-{partition} led and in sync")
