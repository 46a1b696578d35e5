"""A TCP proxy between coordinator clients and the server that injects real faults.

It forwards bytes both ways and parses the frames (4-byte length + msgpack) so
that it can, on request:

* ``drop_response(predicate, count)``: forward a matching request to the server
  (which really applies it), then swallow the server's response and cut the
  connection. The client sees a genuine lost answer (CONNECTION_LOSS during
  the request), reconnects through the proxy and resumes its session.
* ``cut()``: drop every current connection (a network blip).
* ``hold()`` / ``release()``: stop forwarding in both directions (a partition;
  the client suspends, the server expires the session if it lasts).

Thread-based, so it serves blocking and trio tests alike.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack

Predicate = Callable[[int, dict[str, Any]], bool]

_HEADER = struct.Struct(">I")


class _Frames:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= 4:
            (length,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < 4 + length:
                break
            frames.append(bytes(self.buffer[: 4 + length]))
            del self.buffer[: 4 + length]
        return frames


def _decode(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(frame[4:], raw=False)
    except ValueError:
        return None


class _Link:
    """One client connection and its server connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.doomed: set[int] = set()
        self.closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._upstream, daemon=True).start()
        threading.Thread(target=self._downstream, daemon=True).start()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _pump(self, source: socket.socket, handle: Callable[[bytes], bool]) -> None:
        frames = _Frames()
        try:
            while not self.closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                self.proxy._wait_released()
                for frame in frames.feed(data):
                    if not handle(frame):
                        return
        except OSError:
            pass
        finally:
            self.close()

    def _upstream(self) -> None:
        def handle(frame: bytes) -> bool:
            message = _decode(frame)
            if isinstance(message, list) and len(message) == 4 and isinstance(message[3], dict):
                api, _version, xid, payload = message
                if self.proxy._should_drop(api, payload):
                    self.doomed.add(xid)
            self.server.sendall(frame)
            return True

        self._pump(self.client, handle)

    def _downstream(self) -> None:
        def handle(frame: bytes) -> bool:
            message = _decode(frame)
            if isinstance(message, list) and len(message) == 3 and message[0] in self.doomed:
                self.proxy.dropped += 1
                return False  # swallow the answer and cut the connection
            self.client.sendall(frame)
            return True

        self._pump(self.server, handle)


class FaultProxy:
    """``FaultProxy(server_address).start()``; clients connect to ``.address``."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._rules: list[list[Any]] = []  # [predicate, remaining]
        self._released = threading.Event()
        self._released.set()
        self._stopped = False
        self.dropped = 0

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(self, client, server)
            with self._lock:
                self._links = [lk for lk in self._links if not lk.closed.is_set()]
                self._links.append(link)
            link.start()

    def drop_response(self, predicate: Predicate, count: int = 1) -> None:
        """Swallow the answers to the next ``count`` requests matching ``predicate``."""
        with self._lock:
            self._rules.append([predicate, count])

    def clear(self) -> None:
        """Forget every pending drop rule."""
        with self._lock:
            self._rules.clear()

    def _should_drop(self, api: int, payload: dict[str, Any]) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule[1] > 0 and rule[0](api, payload):
                    rule[1] -= 1
                    return True
        return False

    def cut(self) -> None:
        """Close every current connection."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def hold(self) -> None:
        """Stop forwarding (data waits in the proxy until ``release``)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _wait_released(self) -> None:
        self._released.wait()

    def stop(self) -> None:
        self._stopped = True
        self._released.set()
        self._listener.close()
        self.cut()


def api_is(*apis: int) -> Predicate:
    """Match requests of these api keys."""
    return lambda api, _payload: api in apis


def path_contains(api: int, fragment: str) -> Predicate:
    """Match requests of ``api`` whose path contains ``fragment``."""
    return lambda a, payload: a == api and fragment in str(payload.get("path", ""))
