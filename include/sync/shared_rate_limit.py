"""A rate limiter whose schedule lives in the warehouse, so every caller of one AWS account shares one quota.

One row holds the account's next free instant. A caller reserves it under the row's write lock, moves it one
interval on, sleeps until it and sends: callers are served in the order they ask, so pool slots share the rate evenly
and each slot has a caller waiting for it (rate_limit.wait_for_slot). A caller woken at most LATE_TOLERANCE_SECONDS
after its slot (the moments of waking and of taking the lock) sends, so those moments do not widen every interval;
one woken later gives its slot up and reserves another, so sending late never crowds the next caller. Either way no
one-second window holds more than `rate` sends, with time to spare for the network (rate_limit.WINDOW_SPARE_SECONDS).
Pool slots, concurrent DAG runs, backfills and worker hosts that use the same AWS connection share this one schedule,
however many there are. A throttle pushes the next free instant a second on, so everybody pauses, and halves this
caller's own rate until successes win it back. Every instant is the warehouse's clock, so a worker whose own clock
is off neither sends early nor makes the others wait; a wait longer than a few seconds is logged with its reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from include.partner_central.rate_limit import LATE_TOLERANCE_SECONDS, AdaptiveRateLimiter, wait_for_slot
from include.sync.dialect import db_epoch, insert_missing
from include.sync.warehouse import Warehouse, retry_transient

THROTTLE_PAUSE_SECONDS = 1.0
# A wait this long is worth a log line; a schedule further ahead than the longest legitimate wait was written by a
# clock that ran ahead (an earlier version used each worker's clock) and is taken back to now.
LOGGED_WAIT_SECONDS = 5.0
MAX_PLAUSIBLE_WAIT_SECONDS = 60.0

log = logging.getLogger(__name__)


class WarehouseRateLimiter:
    def __init__(
        self,
        warehouse: Warehouse,
        key: str,
        rate: float,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        """clock: seconds since the epoch; by default the warehouse's own, read in the same locked transaction."""
        self.warehouse = warehouse
        self.key = key
        self.own_rate = AdaptiveRateLimiter(rate)  # only its rate bookkeeping is used
        self._clock = clock
        self._timer = clock or time.monotonic
        self._sleep = sleep
        rate_limit = warehouse.schema.rate_limit
        self._select = (
            sa.select(rate_limit.c.next_free_at, db_epoch()).where(rate_limit.c.limiter_key == key).with_for_update()
        )
        self._move = sa.update(rate_limit).where(rate_limit.c.limiter_key == key)
        # The row exists before anyone locks it: two first callers must not both find it missing.
        with warehouse.transaction() as connection:
            connection.execute(insert_missing(rate_limit, connection.dialect), {"limiter_key": key, "next_free_at": 0})

    def _read(self, connection: sa.Connection) -> tuple[float, float]:
        """(now, the account's next free instant), under the row's lock."""
        next_free, db_now = connection.execute(self._select).one()
        return (self._clock() if self._clock else float(db_now)), float(next_free)

    @retry_transient
    def acquire(self) -> None:
        wait_for_slot(self._reserve, self._timer, self._sleep)

    def _reserve(self, ahead: bool) -> tuple[float, float]:
        """(now, the slot) on this process's timer: the schedule is kept in the warehouse's clock, and the wait until
        the slot is measured from the moment the warehouse answered."""
        with self.warehouse.transaction(lock=True) as connection:
            now, next_free = self._read(connection)
            read_at = self._timer()
            if next_free - now > MAX_PLAUSIBLE_WAIT_SECONDS:
                log.warning(
                    "The shared rate schedule of %s was %.0f s ahead of the warehouse's clock (written by a clock "
                    "that ran ahead); sending now instead of waiting",
                    self.key,
                    next_free - now,
                )
                next_free = now
            # A caller at most LATE_TOLERANCE_SECONDS after the free instant keeps the schedule; a later one starts it
            # again from now.
            slot = next_free if now - next_free <= LATE_TOLERANCE_SECONDS else now
            if ahead or slot <= now:
                connection.execute(self._move.values(next_free_at=slot + self.own_rate.interval()))
        wait = slot - now
        if wait > LOGGED_WAIT_SECONDS:
            log.info(
                "Waiting %.1f s for a rate slot of %s: the API throttled this account's callers and the shared "
                "schedule is pausing everybody (rate %.2g/s here)",
                wait,
                self.key,
                self.own_rate.rate,
            )
        return read_at, read_at + wait

    @retry_transient
    def throttled(self) -> None:
        self.own_rate.throttled()
        with self.warehouse.transaction(lock=True) as connection:
            now, next_free = self._read(connection)
            pause_until = max(now + THROTTLE_PAUSE_SECONDS, min(next_free, now + MAX_PLAUSIBLE_WAIT_SECONDS))
            connection.execute(self._move.values(next_free_at=pause_until))

    def succeeded(self) -> None:
        self.own_rate.succeeded()
