"""Error codes and the exception classes they map to.

Every service (coordinator, broker) has one table of codes. Codes 1-9 are the
same in every service: they are raised by the framing layer itself. A service's
own codes start at 100. The server raises these exception classes in its
sans-IO core and answers with ``exc.code``; the client maps the code back to the
same class, so ``except NoNodeError`` works on both sides.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar


class RivuletError(Exception):
    """Base of every error a Rivulet client or server raises on purpose."""


class ProtocolError(RivuletError):
    """The byte stream broke the framing rules; the connection cannot go on."""


class MalformedFrameError(ProtocolError):
    """A frame whose body is not valid msgpack, or not a message of the protocol."""


class FrameTooLargeError(ProtocolError):
    """A frame's declared length exceeds the configured maximum."""


class ConnectionLostError(RivuletError):
    """The connection closed before the response arrived (retriable)."""

    retriable: ClassVar[bool] = True


class ServerError(RivuletError):
    """An error answered by a server; one subclass per error code."""

    code: ClassVar[int] = 1
    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    retriable: ClassVar[bool] = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.name)
        self.message = message or self.name

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message != self.name else self.name


class InternalServerError(ServerError):
    """The server failed unexpectedly while handling the request."""

    code = 1
    name = "UNKNOWN_SERVER_ERROR"


class UnsupportedApiError(ServerError):
    """The server does not know this api key."""

    code = 2
    name = "UNSUPPORTED_API"


class UnsupportedVersionError(ServerError):
    """The server does not speak this version of the api."""

    code = 3
    name = "UNSUPPORTED_VERSION"


class InvalidRequestError(ServerError):
    """A payload that is malformed, of the wrong type or out of range."""

    code = 4
    name = "INVALID_REQUEST"


class FrameTooLargeServerError(ServerError):
    """The server refused an oversized frame and will close the connection."""

    code = 5
    name = "FRAME_TOO_LARGE"


class RequestTimedOutError(ServerError):
    """The server gave up waiting on the request's condition."""

    code = 6
    name = "REQUEST_TIMED_OUT"
    retriable = True


COMMON_ERRORS: tuple[type[ServerError], ...] = (
    InternalServerError,
    UnsupportedApiError,
    UnsupportedVersionError,
    InvalidRequestError,
    FrameTooLargeServerError,
    RequestTimedOutError,
)

E = TypeVar("E", bound=type[ServerError])


class ErrorTable:
    """A service's code -> exception class map (the common codes are built in)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._by_code: dict[int, type[ServerError]] = {}
        self._by_name: dict[str, type[ServerError]] = {}
        for cls in COMMON_ERRORS:
            self.register(cls)

    def register(self, cls: E) -> E:
        """Class decorator: add one error class; codes and names must be unique."""
        if cls.code in self._by_code or cls.name in self._by_name:
            raise ValueError(f"{self.service}: duplicate error {cls.code} {cls.name}")
        self._by_code[cls.code] = cls
        self._by_name[cls.name] = cls
        return cls

    def exception(self, code: int, message: str = "") -> ServerError:
        """The exception for a code received on the wire (unknown codes stay readable)."""
        cls = self._by_code.get(code)
        if cls is None:
            return InternalServerError(f"unknown {self.service} error code {code}: {message}")
        return cls(message)

    def by_name(self, name: str) -> type[ServerError]:
        return self._by_name[name]

    def classes(self) -> list[type[ServerError]]:
        return sorted(self._by_code.values(), key=lambda c: c.code)
