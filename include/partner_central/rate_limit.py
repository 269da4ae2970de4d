"""Client-side rate limiting: stay at or under the API's quota, and slow down further while throttled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

# The documented quota of the reads (GetRelationship, ListRelationships): 5 requests per second per AWS account.
DEFAULT_READS_PER_SECOND = 5.0
# The documented quota of each write (CreateRelationship, UpdateRelationship, DeleteRelationship): 3 requests per
# second per AWS account.
DEFAULT_WRITES_PER_SECOND = 3.0
# Calls are spaced a little wider than 1/rate, so that jitter between sending and arriving cannot put one call more
# than the quota into any one second.
SPACING_MARGIN = 1.05


# A caller that wakes up later than this share of the interval after its slot (a busy CPU, a paused process) gives the
# slot up and takes a new one: sending late would crowd the next caller's slot.
LATE_TOLERANCE = (SPACING_MARGIN - 1) / 2


def wait_for_slot(
    reserve: Callable[[], tuple[float, float]],
    interval: Callable[[], float],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Reserve a slot (reserve() returns (now, slot)), sleep until it, and take a new one if woken too late for it
    (at most a few times: a starved process must still make progress)."""
    for _ in range(3):
        now, slot = reserve()
        if slot <= now:
            return
        sleep(slot - now)
        if clock() - slot <= LATE_TOLERANCE * interval():
            return


class RateLimiter(Protocol):
    def acquire(self) -> None: ...
    def throttled(self) -> None: ...
    def succeeded(self) -> None: ...


class Unpaced:
    """No pacing: for a caller that sends one call at a time and leaves the quota to the service's throttling."""

    def acquire(self) -> None:
        pass

    def throttled(self) -> None:
        pass

    def succeeded(self) -> None:
        pass


class AdaptiveRateLimiter:
    """Spaces calls at least 1/rate apart; halves the rate on each throttle and wins it back on each success.

    Thread-safe, but local to one process: callers in different processes share the quota through a limiter that
    keeps its schedule in a shared store (the sync uses the warehouse for that).
    """

    def __init__(
        self,
        rate: float = DEFAULT_WRITES_PER_SECOND,
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

    def interval(self) -> float:
        return SPACING_MARGIN / self.rate

    def acquire(self) -> None:
        wait_for_slot(self._reserve, self.interval, self._clock, self._sleep)

    def _reserve(self) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            self._next_free = start + self.interval()
        return now, start

    def throttled(self) -> None:
        with self._lock:
            self.rate = max(self.max_rate / 16, self.rate / 2)

    def succeeded(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 8)
