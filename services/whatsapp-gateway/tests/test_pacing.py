"""The number's throughput schedule (sending/pacing.py) against real PostgreSQL.

A call that leaves too late for its slot reserves more instead of crowding the
next call, and still leaves; two pacers (two replicas) sharing the schedule with a
jittery event loop still never put more than the limit into any one-second window.

Timing assertions are on what the pacer guarantees whatever the machine's load:
slots ``T = (1 + a) / L`` apart in the database's clock, each call leaving within
``b = a * LEAVE_SHARE`` after its slot (a later one takes a new slot), so any
``L + 1`` departures span at least ``L * T - b = 1 + a - b`` seconds. A loaded machine only makes
calls miss slots (slower), never closer; the one tolerance, ``CLOCK_S``, is for
comparing the database's clock with this process's monotonic one.
"""

import asyncio
import bisect
import random
import time
import uuid

import pytest

from pytake_common import rawpg
from pytake_whatsapp_gateway.metrics import SLOTS_MISSED
from pytake_whatsapp_gateway.sending.pacing import LEAVE_SHARE, ClockOffset, Pacer

ALLOWANCE_S = 0.03
#: What the allowance leaves for the way to Meta: ``a - b``.
TRAVEL_S = ALLOWANCE_S * (1 - LEAVE_SHARE)
#: The database's clock and this process's monotonic clock may tick at rates a few
#: hundred ppm apart (NTP slewing): well under 1 ms over a test's few seconds.
CLOCK_S = 0.002


def tightest_span(times: list[float], count: int) -> float:
    """The shortest time any ``count`` of ``times`` span (inf if there are fewer)."""
    ordered = sorted(times)
    spans = [b - a for a, b in zip(ordered, ordered[count - 1 :], strict=False)]
    return min(spans, default=float("inf"))


def missed() -> float:
    return sum(SLOTS_MISSED.labels(at)._value.get() for at in ("wakeup", "write"))


async def test_a_slot_missed_by_more_than_the_leaving_share_is_not_used(app):
    oversleeps: list[float] = []

    async def late_sleep(seconds: float) -> None:
        # The first real wait ends 200 ms late (a busy event loop), the others on time.
        late = oversleeps.pop() if oversleeps and seconds > 0.05 else 0.0
        await asyncio.sleep(seconds + late)

    pacer = Pacer(
        app.state.db,
        jitter_allowance_s=ALLOWANCE_S,
        pair_interval_s=0,
        pair_burst=1,
        sleep=late_sleep,
    )
    number_id = uuid.uuid4()
    await pacer.number_slot(number_id, 10)  # the schedule's first slot: now
    oversleeps.append(0.2)
    before = missed()
    await pacer.number_slot(number_id, 10)  # 100 ms ahead, woken 200 ms late
    assert missed() >= before + 1


async def test_a_persistently_late_process_still_gets_its_calls_out(app):
    async def always_late(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.06)  # every wake-up 60 ms late: > a / 2

    pacer = Pacer(
        app.state.db,
        jitter_allowance_s=ALLOWANCE_S,
        pair_interval_s=0,
        pair_burst=1,
        sleep=always_late,
    )
    number_id = uuid.uuid4()
    before = missed()
    # It reserves 2, 4, ... slots until its lateness fits: all calls leave.
    async with asyncio.timeout(30):
        for _ in range(4):
            await pacer.number_slot(number_id, 10)
    assert missed() >= before + 1


async def test_two_replicas_with_jittery_loops_never_exceed_the_limit(app):
    limit = 20

    async def jittery_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds + random.choice([0.0, 0.0, 0.005, 0.02, 0.06]))

    replicas = [
        Pacer(
            app.state.db,
            jitter_allowance_s=ALLOWANCE_S,
            pair_interval_s=0,
            pair_burst=1,
            sleep=jittery_sleep,
        )
        for _ in range(2)
    ]
    number_id = uuid.uuid4()
    left: list[float] = []

    async def send(pacer: Pacer) -> None:
        await pacer.number_slot(number_id, limit)
        left.append(time.monotonic())  # where the Graph call would leave

    await asyncio.gather(*(send(replicas[i % 2]) for i in range(2 * limit + 5)))
    assert len(left) == 2 * limit + 5
    # Not only <= limit per second: any limit + 1 departures span 1 + a - b s at least.
    assert tightest_span(left, limit + 1) >= 1 + TRAVEL_S - CLOCK_S
    busiest = max(bisect.bisect_left(left, t + 1.0) - i for i, t in enumerate(sorted(left)))
    assert busiest <= limit


async def test_the_first_slot_after_an_idle_spell_leaves_room_for_the_commit(app):
    pacer = Pacer(
        app.state.db,
        jitter_allowance_s=ALLOWANCE_S,
        pair_interval_s=0,
        pair_burst=1,
        lead_s=0.08,
    )
    number_id = uuid.uuid4()
    interval = pacer.interval(10)
    async with rawpg.transaction(app.state.db, bypass_rls=True) as conn:
        before = time.monotonic()
        first = await pacer.take_slot(conn, number_id, 10)
        second = await pacer.take_slot(conn, number_id, 10)
    # Idle schedule: the first slot is the lead ahead of the claim, not "now" (which
    # the commit and the wake-up would always miss) ...
    assert first.earliest - before >= 0.08 - CLOCK_S
    # ... and the next one follows it by T, without a lead of its own. (Each slot lies
    # in [earliest, at] of this process's clock.)
    assert second.at - first.earliest >= interval - CLOCK_S
    assert second.earliest - first.at <= interval + CLOCK_S


async def test_a_late_call_first_takes_a_single_new_slot(app):
    oversleeps = [0.3]

    async def late_once(seconds: float) -> None:
        await asyncio.sleep(seconds + (oversleeps.pop() if oversleeps else 0.0))

    pacer = Pacer(
        app.state.db,
        jitter_allowance_s=ALLOWANCE_S,
        pair_interval_s=0,
        pair_burst=1,
        lead_s=0.05,  # the first slot is ahead: the call sleeps, and oversleeps 300 ms
        sleep=late_once,
    )
    number_id = uuid.uuid4()
    interval = pacer.interval(10)
    before = missed()
    await pacer.number_slot(number_id, 10)  # misses its slot once, then leaves
    left = time.monotonic()
    assert missed() == before + 1
    # The retry reserved one slot (it left in it), not two: the next slot is one
    # interval after that departure, not two.
    async with rawpg.transaction(app.state.db, bypass_rls=True) as conn:
        following = await pacer.take_slot(conn, number_id, 10)
    assert following.earliest - left <= interval + CLOCK_S


def test_the_clock_offset_holds_the_true_offset_and_tightens_to_the_best_round_trip():
    rng = random.Random(7)
    clock = ClockOffset()
    theta0, drift = 1_800_000_000.0, 400e-6  # the database's clock runs 400 ppm fast
    local = 100.0
    widths = []
    for _ in range(2000):
        local += rng.uniform(0.001, 0.05)
        t0 = local
        # The database reads its clock somewhere in the round trip, which this
        # process sees stretched by a busy loop now and then (up to 60 ms).
        read = t0 + rng.uniform(0.0002, 0.001)
        t1 = read + rng.uniform(0.0002, 0.001) + rng.choice([0.0, 0.0, 0.02, 0.06])
        db = read + theta0 + drift * (read - 100.0)
        lo, hi = clock.sample(db, t0, t1)
        true = db - read
        assert lo <= true <= hi
        assert hi - lo <= t1 - t0 + 1e-6  # never looser than the sample (epochs: float)
        widths.append(hi - lo)
        local = t1
    # Loaded round trips (20-60 ms) no longer widen the slot's interval.
    assert max(widths[100:]) < 0.005


def test_a_stepped_clock_restarts_the_clock_offset():
    clock = ClockOffset()
    for i in range(10):
        clock.sample(1000.0 + i, 10.0 + i, 10.001 + i)
    lo, hi = clock.sample(1000.0 + 10 + 0.5, 20.0, 20.001)  # the database's clock jumped
    assert (lo, hi) == pytest.approx((990.4995, 990.5005))
