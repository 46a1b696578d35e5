"""The native wire protocol shared by every Rivulet server and client.

A frame is a 4-byte big-endian length and a msgpack body. Requests are
``[api, version, xid, payload]``, responses ``[xid, error_code, payload]`` and
server pushes ``[-1, event]`` (DESIGN §3).
"""

from client.wire.channel import RpcChannel
from client.wire.connection import FramedConnection
from client.wire.errors import (
    COMMON_ERRORS,
    ConnectionLostError,
    ErrorTable,
    FrameTooLargeError,
    FrameTooLargeServerError,
    InternalServerError,
    InvalidRequestError,
    MalformedFrameError,
    ProtocolError,
    RequestTimedOutError,
    RivuletError,
    ServerError,
    UnsupportedApiError,
    UnsupportedVersionError,
)
from client.wire.frames import (
    DEFAULT_MAX_FRAME,
    PUSH_XID,
    FrameDecoder,
    InvalidMessage,
    Push,
    Request,
    Response,
    UndecodableFrame,
    encode_frame,
    encode_push,
    encode_request,
    encode_response,
    parse_request,
    parse_server_message,
)
from client.wire.payload import Payload

__all__ = [
    "COMMON_ERRORS",
    "DEFAULT_MAX_FRAME",
    "PUSH_XID",
    "ConnectionLostError",
    "ErrorTable",
    "FrameDecoder",
    "FrameTooLargeError",
    "FrameTooLargeServerError",
    "FramedConnection",
    "InternalServerError",
    "InvalidMessage",
    "InvalidRequestError",
    "MalformedFrameError",
    "Payload",
    "ProtocolError",
    "Push",
    "Request",
    "RequestTimedOutError",
    "Response",
    "RivuletError",
    "RpcChannel",
    "ServerError",
    "UndecodableFrame",
    "UnsupportedApiError",
    "UnsupportedVersionError",
    "encode_frame",
    "encode_push",
    "encode_request",
    "encode_response",
    "parse_request",
    "parse_server_message",
]
