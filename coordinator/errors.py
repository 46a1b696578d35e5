"""Coordinator error codes (ZooKeeper's KeeperException codes, renumbered from 100).

The sans-IO tree raises these; the server answers with their codes; the client
raises the same classes. Catch CoordinatorError for any of them.
"""

from __future__ import annotations

from client.wire import ErrorTable, ServerError

ERRORS = ErrorTable("coordinator")


class CoordinatorError(ServerError):
    """Base of the coordinator's own error codes."""


@ERRORS.register
class NoNodeError(CoordinatorError):
    """The node (or, for create, its parent) does not exist."""

    code = 100
    name = "NO_NODE"


@ERRORS.register
class NodeExistsError(CoordinatorError):
    """Create of a path that already exists."""

    code = 101
    name = "NODE_EXISTS"


@ERRORS.register
class BadVersionError(CoordinatorError):
    """The expected version did not match the node's version."""

    code = 102
    name = "BAD_VERSION"


@ERRORS.register
class NotEmptyError(CoordinatorError):
    """Delete of a node that still has children."""

    code = 103
    name = "NOT_EMPTY"


@ERRORS.register
class NoChildrenForEphemeralsError(CoordinatorError):
    """Create under an ephemeral node: ephemerals cannot have children."""

    code = 104
    name = "NO_CHILDREN_FOR_EPHEMERALS"


@ERRORS.register
class InvalidPathError(CoordinatorError):
    """A path that breaks the naming rules."""

    code = 105
    name = "INVALID_PATH"


@ERRORS.register
class DataTooLargeError(CoordinatorError):
    """Data larger than the server's max_data_bytes (1 MiB by default)."""

    code = 106
    name = "DATA_TOO_LARGE"


@ERRORS.register
class SessionExpiredError(CoordinatorError):
    """The session is gone: its ephemerals are deleted and its watches dropped."""

    code = 107
    name = "SESSION_EXPIRED"


@ERRORS.register
class SessionRequiredError(CoordinatorError):
    """A request that needs a session was sent before CONNECT."""

    code = 108
    name = "SESSION_REQUIRED"


@ERRORS.register
class AuthFailedError(CoordinatorError):
    """Reconnect with a session id whose password does not match."""

    code = 109
    name = "AUTH_FAILED"


@ERRORS.register
class RolledBackError(CoordinatorError):
    """A multi operation that was valid but undone because another one failed."""

    code = 110
    name = "ROLLED_BACK"


@ERRORS.register
class RuntimeInconsistencyError(CoordinatorError):
    """A multi operation after the failing one; it was never checked."""

    code = 111
    name = "RUNTIME_INCONSISTENCY"


@ERRORS.register
class BadArgumentsError(CoordinatorError):
    """A request whose values are invalid (bad mode, TTL without a TTL mode, ...)."""

    code = 112
    name = "BAD_ARGUMENTS"


@ERRORS.register
class NoWatcherError(CoordinatorError):
    """remove_watches for a watch this session does not have."""

    code = 113
    name = "NO_WATCHER"


@ERRORS.register
class TooManyRequestsError(CoordinatorError):
    """The server is over its outstanding request limit; retry after a back-off."""

    code = 114
    name = "TOO_MANY_REQUESTS"
    retriable = True


@ERRORS.register
class NotConnectedError(CoordinatorError):
    """A client-side state: no connection to any server right now (retriable)."""

    code = 115
    name = "CONNECTION_LOSS"
    retriable = True
