"""Client-side rate limiting: stay at or under the API's quota, and slow down further while throttled."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

# The documented quota of the reads (GetRelationship, ListRelationships): 5 requests per second per AWS account.
DEFAULT_READS_PER_SECOND = 5.0
# The documented quota of each write (CreateRelationship, UpdateRelationship, DeleteRelationship): 3 requests per
# second per AWS account.
DEFAULT_WRITES_PER_SECOND = 3.0
# The quota counts calls per second: no one-second window may hold more than `rate` calls. Calls are spaced so that
# `rate` consecutive intervals span WINDOW_SPARE_SECONDS more than a second; a send may then come up to that much
# later than its instant (a caller woken late, jitter between sending and arriving) without putting one call more
# than the quota into any one-second window.
WINDOW_SPARE_SECONDS = 0.025
# A caller that takes its instant at most this late keeps the schedule (the next instant is one interval after its
# own), so the moments of waking and of taking a lock do not widen every interval; one later than this gives its
# instant up, so that sending late cannot crowd the next caller. The rest of the spare is the network's.
LATE_TOLERANCE_SECONDS = WINDOW_SPARE_SECONDS / 2
# Slots a caller may reserve ahead and miss (woken too late) before it waits for one to come due instead.
RESERVATIONS = 3


# The account's quota each operation counts against: each write has its own (the sync paces tag writes on the
# update schedule); every other call is a read.
WRITE_QUOTAS = {
    "CreateRelationship": "create",
    "UpdateRelationship": "update",
    "TagResource": "update",
    "UntagResource": "update",
    "DeleteRelationship": "delete",
}
READ_QUOTA = "read"


def quota_of(operation: str) -> str:
    return WRITE_QUOTAS.get(operation, READ_QUOTA)


def spacing(rate: float) -> float:
    """Seconds between two instants of the schedule at `rate` calls per second."""
    return (1 + WINDOW_SPARE_SECONDS) / rate


def wait_for_slot(
    reserve: Callable[[bool], tuple[float, float]],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Reserve the next slot (reserve(True) returns (now, slot) and moves the schedule past it), sleep until it, and
    send. Reserving ahead serves callers in the order they ask, so concurrent callers share the rate evenly and every
    slot has a caller waiting for it. One woken too late for its slot gives it up (sending it late could crowd the
    next caller's) and reserves again; after RESERVATIONS such wakes it takes a slot only once it is due
    (reserve(False) moves the schedule only when the slot is now), so a starved process still makes progress."""
    for attempt in itertools.count():
        ahead = attempt < RESERVATIONS
        now, slot = reserve(ahead)
        if slot <= now:
            return
        sleep(slot - now)
        if ahead and clock() - slot <= LATE_TOLERANCE_SECONDS:
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
        return spacing(self.rate)

    def acquire(self) -> None:
        wait_for_slot(self._reserve, self._clock, self._sleep)

    def _reserve(self, ahead: bool) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_free)
            if ahead or start <= now:
                self._next_free = start + self.interval()
        return now, start

    def throttled(self) -> None:
        with self._lock:
            self.rate = max(self.max_rate / 16, self.rate / 2)

    def succeeded(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 8)
