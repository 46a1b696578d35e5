"""Back-off and retry policies (sans-IO: they compute delays; the caller sleeps)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from coordinator.errors import NotConnectedError, TooManyRequestsError


class Backoff:
    """Exponential back-off with full jitter between reconnect attempts."""

    def __init__(
        self, initial: float = 0.05, maximum: float = 1.0, *, rng: random.Random | None = None
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def reset(self) -> None:
        """Forget earlier failures (after a successful connect)."""
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt, growing with each failure."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self._attempt, 30)))
        self._attempt += 1
        # Jitter keeps many clients of a restarted server from reconnecting in lockstep.
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """kazoo's KazooRetry: how often and how long to retry a retriable failure.

    ``max_tries`` counts every attempt (``-1`` retries forever); ``deadline`` bounds
    the total time spent sleeping in seconds (``None``: no bound).
    """

    max_tries: int = 5
    delay: float = 0.1
    backoff: float = 2.0
    max_delay: float = 5.0
    deadline: float | None = 30.0
    retriable: tuple[type[BaseException], ...] = field(
        default=(NotConnectedError, TooManyRequestsError)
    )

    def __post_init__(self) -> None:
        if self.max_tries == 0 or self.max_tries < -1:
            raise ValueError("max_tries must be positive or -1 (forever)")
        if self.delay < 0 or self.backoff < 1 or self.max_delay < 0:
            raise ValueError("need delay >= 0, backoff >= 1 and max_delay >= 0")

    def is_retriable(self, exc: BaseException) -> bool:
        """Whether another attempt may succeed after ``exc``."""
        return isinstance(exc, self.retriable)

    def delays(self) -> Iterator[float]:
        """Sleeps between attempts; ends when no attempt is left."""
        delay = self.delay
        slept = 0.0
        tries = 1
        while self.max_tries == -1 or tries < self.max_tries:
            step = min(delay, self.max_delay)
            if self.deadline is not None and slept + step > self.deadline:
                return
            yield step
            slept += step
            tries += 1
            delay *= self.backoff
