"""API_VERSIONS: every api this broker speaks, with its version range."""

from __future__ import annotations

from typing import Any

from broker.connection import ClientConnection
from client.protocol import API_VERSIONS
from client.wire import Payload


def handle_api_versions(conn: ClientConnection, xid: int, p: Payload) -> dict[str, Any]:
    return {"api_versions": [[api, 0, top] for api, top in sorted(API_VERSIONS.items())]}
