"""The metrics and health HTTP endpoint, served by trio on the service's own event loop.

Two resources, ``GET`` (or ``HEAD``) only:

- ``/metrics``: every collector of a ``prometheus_client.CollectorRegistry`` in
  the Prometheus text format (or OpenMetrics when the scraper's ``Accept``
  header asks for it);
- ``/health``: ``200`` and ``{"status": "ok", ...}`` while every health check
  passes, ``503`` and ``{"status": "unavailable", ...}`` otherwise.

Collection runs on the event loop, between requests of the service, so a
collector may read the service's state directly (no locks, nothing half
updated). HTTP/1.1 with one request per connection (``Connection: close``):
a scrape every few seconds needs nothing more, and nothing here keeps a
connection open. Heads larger than 16 KiB, or slower than 10 seconds, are cut
off.
"""

from __future__ import annotations

import json
import logging

import trio
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from client.observability.health import Health

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 30.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """The request head cannot be parsed."""


class MetricsServer:
    """Serves ``/metrics`` from ``registry`` and ``/health`` from ``health``."""

    def __init__(
        self, registry: CollectorRegistry, health: Health, *, host: str, port: int
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(port)`` once listening."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host or None)
        if self.port == 0 and len(listeners) > 1:
            # Port 0 gives each address family a different port; keep one.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._serve_one, listeners)
            logger.info("metrics and health on http://%s:%d/", self.host, port)
            task_status.started(port)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                await self._exchange(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            logger.debug("metrics connection failed: %r", exc)

    async def _exchange(self, stream: trio.SocketStream) -> None:
        with trio.move_on_after(READ_TIMEOUT_SECONDS) as scope:
            try:
                method, path, headers = await _read_head(stream)
            except BadRequest as exc:
                await _send(stream, 400, "text/plain; charset=utf-8", f"{exc}\n".encode())
                return
        if scope.cancelled_caught:
            return
        status, content_type, body = self.respond(method, path, headers)
        with trio.move_on_after(SEND_TIMEOUT_SECONDS):
            await _send(stream, status, content_type, body, head_only=method == "HEAD")

    def respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request (synchronous: runs on the loop)."""
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, text, b"only GET and HEAD\n"
        route = path.split("?", 1)[0]
        if route == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            try:
                return 200, content_type, encoder(self.registry)
            except Exception:
                # A collector's bug must not take the service down; the scrape fails.
                logger.exception("collecting metrics failed")
                return 500, text, b"collecting metrics failed; see the service log\n"
        if route == "/health":
            healthy, report = self.health.report()
            body = json.dumps(report, sort_keys=True, default=str).encode() + b"\n"
            return (200 if healthy else 503), "application/json", body
        if route == "/":
            return 200, text, b"/metrics  Prometheus metrics\n/health   health (JSON)\n"
        return 404, text, b"not found: try /metrics or /health\n"


async def _read_head(stream: trio.SocketStream) -> tuple[str, str, dict[str, str]]:
    buffer = bytearray()
    end = -1
    while len(buffer) <= MAX_HEAD_BYTES:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise BadRequest("connection closed before the request head ended")
        buffer += chunk
    if not 0 <= end <= MAX_HEAD_BYTES:
        raise BadRequest("request head too large")
    head = bytes(buffer[:end])
    lines = head.decode("latin-1").split("\r\n")  # latin-1 decodes any byte
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"malformed request line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


async def _send(
    stream: trio.SocketStream,
    status: int,
    content_type: str,
    body: bytes,
    *,
    head_only: bool = False,
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("latin-1")
    await stream.send_all(head if head_only else head + body)
