"""Transactions (MULTI): the op list, and the mapping of results kazoo-style."""

from __future__ import annotations

from typing import Any, Self

from coordinator.client.requests import (
    check_data,
    check_path,
    check_version,
    create_payload,
    parse_stat,
)
from coordinator.errors import (
    ERRORS,
    CoordinatorError,
    RolledBackError,
    RuntimeInconsistencyError,
)
from coordinator.protocol import Stat

TransactionResult = str | Stat | bool | CoordinatorError


class TransactionBuilder:
    """Collects ops; ``payload()`` is the MULTI request, ``results()`` maps its answer."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []
        self.committed = False

    def check(self, path: str, version: int) -> Self:
        """Require ``path`` to be at ``version``."""
        self.ops.append(["check", {"path": check_path(path), "version": check_version(version)}])
        return self

    def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        make_parents: bool = False,
        container: bool = False,
        ttl: float | None = None,
    ) -> Self:
        """Create a node (same arguments as the client's ``create``)."""
        self.ops.append(
            [
                "create",
                create_payload(
                    path,
                    data,
                    ephemeral=ephemeral,
                    sequential=sequential,
                    make_parents=make_parents,
                    container=container,
                    ttl=ttl,
                ),
            ]
        )
        return self

    def set_data(self, path: str, data: bytes, version: int = -1) -> Self:
        """Replace a node's data (optionally only at ``version``)."""
        self.ops.append(
            [
                "set",
                {
                    "path": check_path(path),
                    "data": check_data(data),
                    "version": check_version(version),
                },
            ]
        )
        return self

    def delete(self, path: str, version: int = -1) -> Self:
        """Delete a node (optionally only at ``version``)."""
        self.ops.append(["delete", {"path": check_path(path), "version": check_version(version)}])
        return self

    def payload(self) -> dict[str, Any]:
        """The MULTI request; a transaction commits once."""
        if self.committed:
            raise ValueError("this transaction was already committed")
        self.committed = True
        return {"ops": self.ops}

    def results(self, response: dict[str, Any]) -> list[TransactionResult]:
        """One result per op: path (create), Stat (set), True (check, delete), or the
        exception instance of a failed op (ROLLED_BACK / RUNTIME_INCONSISTENCY for
        the others)."""
        raw = response.get("results")
        if not isinstance(raw, list) or len(raw) != len(self.ops):
            raise CoordinatorError(f"malformed MULTI response: {response!r}")
        out: list[TransactionResult] = []
        for (op, args), item in zip(self.ops, raw, strict=True):
            code, result = item
            if code:
                detail = result if isinstance(result, str) else args.get("path", "")
                error = ERRORS.exception(code, detail)
                if not isinstance(error, CoordinatorError):
                    # A common wire error (INVALID_REQUEST, ...) inside a multi result.
                    error = CoordinatorError(str(error))
                out.append(error)
            elif op == "create":
                out.append(str(result["path"]))
            elif op == "set":
                out.append(parse_stat(result["stat"]))
            else:
                out.append(True)
        return out


def first_error(results: list[TransactionResult]) -> CoordinatorError | None:
    """The op's own failure (not the ROLLED_BACK/RUNTIME_INCONSISTENCY of the others)."""
    errors = [r for r in results if isinstance(r, CoordinatorError)]
    for error in errors:
        if not isinstance(error, RolledBackError | RuntimeInconsistencyError):
            return error
    return errors[0] if errors else None
