"""Client-side rate limiting: stay at or under the API's quota, and slow down further while throttled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

# The documented quota of CreateRelationship: 3 requests per second per AWS account.
DEFAULT_CREATES_PER_SECOND = 3.0
# Calls are spaced a hair wider than 1/rate, so network jitter cannot push a fourth call into one second.
SPACING_MARGIN = 1.02


class RateLimiter(Protocol):
    def acquire(self) -> None: ...
    def throttled(self) -> None: ...
    def succeeded(self) -> None: ...


class AdaptiveRateLimiter:
    """Spaces calls at least 1/rate apart; halves the rate on each throttle and wins it back on each success.

    Thread-safe, but local to one process: callers in different processes share the quota through a limiter that
    keeps its schedule in a shared store (the sync uses the warehouse for that).
    """

    def __init__(
        self,
        rate: float = DEFAULT_CREATES_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.max_rate = rate
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next_free = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + SPACING_MARGIN / self.rate
        if start > now:
            self._sleep(start - now)

    def throttled(self) -> None:
        with self._lock:
            self.rate = max(self.max_rate / 16, self.rate / 2)

    def succeeded(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 8)
