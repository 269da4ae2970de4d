"""A rate limiter whose schedule lives in the warehouse, so every caller of one AWS account shares one quota.

Each call reserves the next free instant in a one-row schedule under a write lock, then sleeps until it. Pool slots,
concurrent DAG runs, backfills and worker hosts that use the same AWS connection therefore never send more than
`rate` calls per second together, however many there are. A throttle pushes the shared schedule back by a second,
so everybody pauses, and halves this caller's own rate until successes win it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from include.partner_central.rate_limit import AdaptiveRateLimiter, wait_for_slot
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

    def _reserve(self, pause: float = 0.0) -> tuple[float, float]:
        with self.warehouse.transaction(lock=True):
            row = self.warehouse.execute(self._select, [self.key]).fetchone()
            now = self._clock()
            start = max(now + pause, row[0] if row else 0.0)
            step = 0.0 if pause else self.own_rate.interval()
            self.warehouse.execute(self._upsert, [self.key, start + step])
        return now, start

    def acquire(self) -> None:
        wait_for_slot(self._reserve, self.own_rate.interval, self._clock, self._sleep)

    def throttled(self) -> None:
        self.own_rate.throttled()
        self._reserve(pause=THROTTLE_PAUSE_SECONDS)

    def succeeded(self) -> None:
        self.own_rate.succeeded()
