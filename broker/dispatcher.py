"""Request dispatch: envelope checks, api and version lookup, errors to error responses.

Two kinds of handlers:

- immediate ones run inline in the connection's read loop and return the
  response payload, or None when they will answer later themselves (a parked
  fetch, an acks=all produce waiting for its fsync, an acks=0 produce);
- background ones are coroutines that talk to the coordinator; each runs as a
  task of its connection and its result is sent when it returns.

Any BrokerError (or common wire error) raised becomes that error's code in the
response envelope; anything else is logged and answered UNKNOWN_SERVER_ERROR.
Either way the connection, and everyone else, is served on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from broker.connection import ClientConnection
from broker.metrics import answers_never, request_key
from client.protocol import API_VERSIONS, ApiKey
from client.wire import (
    InternalServerError,
    InvalidRequestError,
    Payload,
    RequestTimedOutError,
    ServerError,
    UndecodableFrame,
    UnsupportedApiError,
    UnsupportedVersionError,
)
from client.wire.frames import InvalidMessage, parse_request
from coordinator.errors import CoordinatorError, NotConnectedError

logger = logging.getLogger(__name__)

ImmediateHandler = Callable[[ClientConnection, int, Payload], dict[str, Any] | None]
BackgroundHandler = Callable[[Payload], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Immediate:
    handle: ImmediateHandler


@dataclass(frozen=True, slots=True)
class Background:
    handle: BackgroundHandler


Route = Immediate | Background


class Dispatcher:
    def __init__(self, routes: dict[int, Route]) -> None:
        missing = set(API_VERSIONS) - set(routes)
        if missing:
            raise ValueError(f"no handler for api(s) {sorted(missing)}")
        self.routes = routes
        self.requests = 0
        self.errors = 0

    def handle(self, conn: ClientConnection, message: Any) -> None:
        """Answer one decoded message (see the module docstring)."""
        self.requests += 1
        if isinstance(message, UndecodableFrame):
            self._fail(conn, 0, InvalidRequestError(message.reason))
            return
        try:
            request = parse_request(message)
        except InvalidMessage as exc:
            self._fail(conn, exc.xid or 0, InvalidRequestError(str(exc)))
            return
        xid = request.xid
        api = request.api
        route = self.routes.get(api)
        # Its latency is recorded when the answer goes out (ClientConnection.finished).
        conn.in_flight[xid] = (request_key(api, request.payload), time.perf_counter())
        try:
            if route is None:
                raise UnsupportedApiError(f"unknown api {api}")
            if not 0 <= request.version <= API_VERSIONS[api]:
                raise UnsupportedVersionError(
                    f"api {ApiKey(api).name} speaks versions 0..{API_VERSIONS[api]}, "
                    f"not {request.version}"
                )
            payload = Payload(request.payload)
            if isinstance(route, Background):
                conn.spawn(self._background, conn, xid, api, route.handle, payload)
                return
            result = route.handle(conn, xid, payload)
        except ServerError as exc:
            self._fail(conn, xid, exc)
            return
        except Exception:
            logger.exception("handler for api %s failed (xid %d, %r)", api, xid, conn)
            self._fail(conn, xid, InternalServerError("internal error; see the broker log"))
            return
        if result is not None:
            conn.respond(xid, result)
        elif answers_never(api, request.payload):
            conn.finished(xid)

    async def _background(
        self,
        conn: ClientConnection,
        xid: int,
        api: int,
        handle: BackgroundHandler,
        payload: Payload,
    ) -> None:
        try:
            result = await handle(payload)
        except NotConnectedError as exc:
            self._fail(conn, xid, RequestTimedOutError(f"coordinator unavailable: {exc.message}"))
            return
        except CoordinatorError as exc:
            # Coordinator codes mean something else in the broker's table: never pass them on.
            logger.warning("api %s: coordinator error %s", api, exc)
            self._fail(conn, xid, InternalServerError(f"coordinator error: {exc}"))
            return
        except ServerError as exc:
            self._fail(conn, xid, exc)
            return
        except Exception:
            logger.exception("handler for api %s failed (xid %d, %r)", api, xid, conn)
            self._fail(conn, xid, InternalServerError("internal error; see the broker log"))
            return
        conn.respond(xid, result)

    def _fail(self, conn: ClientConnection, xid: int, error: ServerError) -> None:
        self.errors += 1
        conn.fail(xid, error)
