from __future__ import annotations

import itertools

import pytest

from include.partner_central.rate_limit import AdaptiveRateLimiter, spacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.starts: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(limiter: AdaptiveRateLimiter, clock: FakeClock, calls: int) -> list[float]:
    starts = []
    for _ in range(calls):
        limiter.acquire()
        starts.append(clock.now)
    return starts


def test_calls_are_spaced_at_the_rate():
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(3, clock=clock, sleep=clock.sleep)
    starts = run(limiter, clock, 7)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([spacing(3)] * 6)
    assert sum(1 for t in starts if starts[0] <= t < starts[0] + 1) == 3


def test_throttling_slows_down_and_success_wins_the_rate_back():
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(4, clock=clock, sleep=clock.sleep)
    limiter.throttled()
    limiter.throttled()
    assert limiter.rate == 1
    run(limiter, clock, 2)
    assert clock.now - 100.0 == pytest.approx(spacing(1))
    for _ in range(100):
        limiter.succeeded()
    assert limiter.rate == 4


def test_the_rate_never_falls_to_zero():
    limiter = AdaptiveRateLimiter(3)
    for _ in range(50):
        limiter.throttled()
    assert limiter.rate == pytest.approx(3 / 16)


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="rate must be positive"):
        AdaptiveRateLimiter(0)


def test_a_caller_woken_too_late_takes_a_new_slot_instead_of_crowding_the_next():
    clock = FakeClock()
    oversleeps = iter([0.2])  # the first sleep overshoots by 200 ms (a busy CPU), the others are exact

    def sleep(seconds: float) -> None:
        clock.sleep(seconds + next(oversleeps, 0.0))

    limiter = AdaptiveRateLimiter(5, clock=clock, sleep=sleep)
    limiter.acquire()  # at 100.0, no sleep
    limiter.acquire()  # slot 100.21, woken at 100.41: too late, so it takes the next slot, 100.42
    assert clock.now == pytest.approx(100.0 + 2 * spacing(5))


def test_a_caller_always_woken_late_still_sends_once_a_slot_is_due():
    """A starved process (every sleep overshoots) gives up RESERVATIONS slots, then takes one only when it is due:
    it makes progress, and the schedule moves on from when it really sends."""
    from include.partner_central.rate_limit import RESERVATIONS

    clock = FakeClock()
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds + 0.2)

    limiter = AdaptiveRateLimiter(5, clock=clock, sleep=sleep)
    limiter.acquire()  # at 100.0
    limiter.acquire()
    assert len(sleeps) == RESERVATIONS + 1  # each reserved slot missed, then one wait for a slot to come due
    sent = clock.now
    limiter.acquire()
    assert clock.now - sent >= spacing(5)


def shared_limiters(tmp_path, count: int, rate: float, now: list[float], sleep=None):
    """`count` callers of one schedule in a SQLite warehouse, on the fake clock `now`."""
    import sqlalchemy as sa

    from include.sync.settings import Tables
    from include.sync.shared_rate_limit import WarehouseRateLimiter
    from include.sync.warehouse import Warehouse

    warehouse = Warehouse(sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}"), Tables())
    warehouse.create_tables()
    sleep = sleep or (lambda seconds: now.__setitem__(0, now[0] + seconds))
    return [WarehouseRateLimiter(warehouse, "aws:test", rate, clock=lambda: now[0], sleep=sleep) for _ in range(count)]


def test_the_shared_limiter_serves_callers_in_the_order_they_ask(tmp_path):
    """Callers that ask at the same moment get consecutive slots, in the order they asked: none waits for a slot
    another takes first, so pool slots share the rate evenly and every slot has a caller waiting for it."""
    now = [1000.0]
    callers = shared_limiters(tmp_path, 4, 10, now)
    interval = callers[0].own_rate.interval()
    slots = [caller._reserve(True)[1] for caller in callers]
    assert slots == pytest.approx([1000.0 + k * interval for k in range(4)])
    assert callers[0]._reserve(True)[1] == pytest.approx(1000.0 + 4 * interval)  # the first again: after the others


def test_the_shared_limiter_spaces_sends_from_when_they_really_happen(tmp_path):
    """Two callers on one warehouse schedule, on a fake clock: sends are an interval apart, a late caller's send
    pushes the next one back (no slot is lost, none is crowded), and a throttle pauses everybody for a second."""
    import sqlalchemy as sa

    from include.sync.settings import Tables
    from include.sync.shared_rate_limit import THROTTLE_PAUSE_SECONDS, WarehouseRateLimiter
    from include.sync.warehouse import Warehouse

    now = [1000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    warehouse = Warehouse(sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}"), Tables())
    warehouse.create_tables()
    first, second = (WarehouseRateLimiter(warehouse, "aws:test", 10, clock=lambda: now[0], sleep=sleep) for _ in "ab")
    interval = first.own_rate.interval()
    sent = []
    for limiter in (first, second, first, second):
        limiter.acquire()
        sent.append(now[0])
    assert [later - earlier for earlier, later in itertools.pairwise(sent)] == pytest.approx([interval] * 3)

    now[0] = sent[-1] + interval + 0.5  # woken half a second late
    first.acquire()
    late = now[0]
    second.acquire()
    assert (late, now[0] - late) == (sent[-1] + interval + 0.5, pytest.approx(interval))

    first.throttled()
    throttled_at = now[0]
    second.acquire()
    assert now[0] - throttled_at == pytest.approx(THROTTLE_PAUSE_SECONDS)


@pytest.mark.parametrize("rate", [3, 20])
def test_callers_a_moment_late_keep_the_shared_schedule_and_no_second_holds_more_than_the_rate(tmp_path, rate):
    """Waking and taking the lock take a moment: that moment must not widen every interval (the rate would fall
    short of the quota), nor may any one-second window hold more sends than the rate, however the moments vary
    (some callers on time, some a moment late, some late enough to give their instant up)."""
    import random

    import sqlalchemy as sa

    from dev.emulator.service import max_in_any_second
    from include.partner_central.rate_limit import LATE_TOLERANCE_SECONDS, WINDOW_SPARE_SECONDS
    from include.sync.settings import Tables
    from include.sync.shared_rate_limit import WarehouseRateLimiter
    from include.sync.warehouse import Warehouse

    now = [1000.0]
    delay = [0.0]

    def sleep(seconds: float) -> None:  # the caller wakes, and gets the lock, a moment after its instant
        now[0] += seconds + delay[0]

    warehouse = Warehouse(sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}"), Tables())
    warehouse.create_tables()
    limiter = WarehouseRateLimiter(warehouse, "aws:test", rate, clock=lambda: now[0], sleep=sleep)
    interval = limiter.own_rate.interval()

    delay[0] = 0.9 * LATE_TOLERANCE_SECONDS
    limiter.acquire()  # the first send: the schedule starts here
    sends = []
    for _ in range(6):
        limiter.acquire()
        sends.append(now[0])
    assert [b - a for a, b in itertools.pairwise(sends)] == pytest.approx([interval] * 5)  # none widened

    moments = random.Random(7)
    for _ in range(20 * rate):
        delay[0] = moments.choice([0.0, moments.uniform(0, LATE_TOLERANCE_SECONDS), moments.uniform(0, 0.2)])
        limiter.acquire()
        sends.append(now[0])
    assert max_in_any_second(sends) <= rate
    # With the network's share of the spare added to any one send, still no second holds more than the rate.
    network = WINDOW_SPARE_SECONDS - LATE_TOLERANCE_SECONDS
    for late in range(len(sends)):
        assert max_in_any_second([t - network * (i == late) for i, t in enumerate(sends)]) <= rate


def test_a_long_wait_for_a_rate_slot_is_logged_with_its_reason(tmp_path, caplog):
    import logging
    import sqlite3

    import sqlalchemy as sa

    from include.sync.settings import Tables
    from include.sync.shared_rate_limit import LOGGED_WAIT_SECONDS, WarehouseRateLimiter
    from include.sync.warehouse import Warehouse

    now = [1000.0]
    warehouse = Warehouse(sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}"), Tables())
    warehouse.create_tables()
    limiter = WarehouseRateLimiter(
        warehouse, "aws:test", 10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    with sqlite3.connect(tmp_path / "warehouse.db") as connection:
        connection.execute("UPDATE partner_central_rate_limit SET next_free_at = ?", [now[0] + LOGGED_WAIT_SECONDS + 2])

    with caplog.at_level(logging.INFO, logger="include.sync.shared_rate_limit"):
        limiter.acquire()

    assert now[0] == pytest.approx(1000.0 + LOGGED_WAIT_SECONDS + 2)
    assert "Waiting 7.0 s for a rate slot of aws:test" in caplog.text and "throttled" in caplog.text
