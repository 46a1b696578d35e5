"""Typed access to a request payload: wrong or missing fields raise INVALID_REQUEST."""

from __future__ import annotations

from typing import Any, TypeVar

from client.wire.errors import InvalidRequestError

T = TypeVar("T")
_MISSING: Any = object()


class Payload:
    """Wraps a decoded msgpack map; every accessor checks the type it returns."""

    __slots__ = ("_data",)

    def __init__(self, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidRequestError("payload must be a map")
        self._data: dict[Any, Any] = data

    def _get(self, key: str, default: Any) -> Any:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise InvalidRequestError(f"missing field {key!r}")
            return default
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise InvalidRequestError(f"field {key!r} must be a string")
        return value

    def blob(self, key: str, default: Any = _MISSING) -> bytes:
        value = self._get(key, default)
        if not isinstance(value, bytes):
            raise InvalidRequestError(f"field {key!r} must be bytes")
        return value

    def opt_blob(self, key: str) -> bytes | None:
        value = self._data.get(key)
        if value is not None and not isinstance(value, bytes):
            raise InvalidRequestError(f"field {key!r} must be bytes or nil")
        return value

    def integer(
        self, key: str, default: Any = _MISSING, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self._get(key, default)
        if type(value) is not int:
            raise InvalidRequestError(f"field {key!r} must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InvalidRequestError(f"field {key!r}={value} is out of range [{lo}, {hi}]")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise InvalidRequestError(f"field {key!r} must be a boolean")
        return value

    def array(self, key: str, default: Any = _MISSING) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise InvalidRequestError(f"field {key!r} must be a list")
        return value

    def texts(self, key: str, default: Any = _MISSING) -> list[str]:
        value = self.array(key, default)
        if not all(isinstance(v, str) for v in value):
            raise InvalidRequestError(f"field {key!r} must be a list of strings")
        return value

    def mapping(self, key: str, default: Any = _MISSING) -> Payload:
        value = self._get(key, default)
        return Payload(value)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self._data
