"""Errors raised by the coordination recipes (client side; they have no wire code)."""

from __future__ import annotations

from client.wire import RivuletError


class RecipeError(RivuletError):
    """Base of the recipes' own errors."""


class LeaseLostError(RecipeError):
    """What was held (a lock, leases, leadership) was or may have been lost.

    Raised when a holder leaves its ``with`` block after its session was lost,
    and by the async forms when the body was cancelled because of a suspension
    or loss. ``state`` is the HoldState that caused it.
    """

    def __init__(self, message: str, state: object = None) -> None:
        super().__init__(message)
        self.state = state


class LockLostError(LeaseLostError):
    """A lock (or read/write lock, or semaphore lease) was lost while held."""


class LeadershipLostError(LeaseLostError):
    """Leadership was lost (or may have been) while leading."""


class AcquireCancelledError(RecipeError):
    """A pending acquire or campaign was ended by ``cancel()``."""


class NotHeldError(RecipeError, RuntimeError):
    """Release of something this participant does not hold."""


class MaxLeasesMismatchError(RecipeError, ValueError):
    """A semaphore participant's ``max_leases`` differs from the stored one."""

    def __init__(self, path: str, stored: int, given: int) -> None:
        super().__init__(
            f"semaphore {path} has max_leases={stored} stored, this participant was "
            f"constructed with {given}; pass max_leases=None to adopt the stored value "
            f"or call set_max_leases() to change it for everyone"
        )
        self.path = path
        self.stored = stored
        self.given = given


class SemaphoreNotInitializedError(RecipeError):
    """A semaphore has no stored max_leases and this participant gave none."""


class MemberExistsError(RecipeError):
    """A group member (or barrier participant) id is taken by another session."""


class CounterOutcomeUnknownError(RecipeError):
    """A counter update was sent, the connection was lost before the answer, and
    so many other updates happened meanwhile that whether it applied cannot be
    told. The counter is consistent; only this call's outcome is unknown."""
