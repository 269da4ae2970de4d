"""A rate limiter whose schedule lives in the warehouse, so every caller of one AWS account shares one quota.

One row holds the account's next free instant. A caller takes it right before sending, under the row's write lock,
and moves it one interval on from that moment; a caller that comes early sleeps until it and tries again. Sends are
therefore spaced by the interval as they really happen, even when a busy CPU wakes a caller late (a late caller
only delays the next one; nobody's slot is wasted). Pool slots, concurrent DAG runs, backfills and worker hosts that
use the same AWS connection never send more than `rate` calls per second together, however many there are. A
throttle pushes the next free instant a second on, so everybody pauses, and halves this caller's own rate until
successes win it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from include.partner_central.rate_limit import AdaptiveRateLimiter
from include.sync.warehouse import Warehouse

THROTTLE_PAUSE_SECONDS = 1.0


class WarehouseRateLimiter:
    def __init__(
        self,
        warehouse: Warehouse,
        key: str,
        rate: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.warehouse = warehouse
        self.key = key
        self.own_rate = AdaptiveRateLimiter(rate)  # only its rate bookkeeping is used
        self._clock = clock
        self._sleep = sleep
        table = warehouse.tables.rate_limit
        self._select = f"SELECT next_free_at FROM {table} WHERE limiter_key = ?{warehouse.dialect.row_lock}"
        self._upsert = (
            f"INSERT INTO {table} (limiter_key, next_free_at) VALUES (?, ?)"
            " ON CONFLICT (limiter_key) DO UPDATE SET next_free_at = excluded.next_free_at"
        )
        # The row exists before anyone locks it: two first callers must not both find it missing.
        with warehouse.transaction():
            warehouse.execute(
                f"INSERT INTO {table} (limiter_key, next_free_at) VALUES (?, 0) ON CONFLICT (limiter_key) DO NOTHING",
                [key],
            )

    def acquire(self) -> None:
        while True:
            with self.warehouse.transaction(lock=True):
                row = self.warehouse.execute(self._select, [self.key]).fetchone()
                now, next_free = self._clock(), (row[0] if row else 0.0)
                if now >= next_free:
                    self.warehouse.execute(self._upsert, [self.key, now + self.own_rate.interval()])
                    return
            self._sleep(next_free - now)

    def throttled(self) -> None:
        self.own_rate.throttled()
        with self.warehouse.transaction(lock=True):
            row = self.warehouse.execute(self._select, [self.key]).fetchone()
            pause_until = max(self._clock() + THROTTLE_PAUSE_SECONDS, row[0] if row else 0.0)
            self.warehouse.execute(self._upsert, [self.key, pause_until])

    def succeeded(self) -> None:
        self.own_rate.succeeded()
