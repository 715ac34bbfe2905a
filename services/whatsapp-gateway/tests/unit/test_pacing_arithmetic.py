"""The pacer's arithmetic on its own: slot spacing, the clock offset, late departures."""

import time
import uuid

import pytest

from pytake_whatsapp_gateway.sending.pacing import LEAVE_SHARE, MAX_DRIFT, ClockOffset, Pacer, Slot


def pacer(jitter: float = 0.03, sleep=None) -> Pacer:
    async def no_sleep(_: float) -> None:
        return None

    return Pacer(
        None,  # type: ignore[arg-type]  # these paths never reach the database
        jitter_allowance_s=jitter,
        pair_interval_s=6.0,
        pair_burst=1,
        sleep=sleep or no_sleep,
    )


@pytest.mark.parametrize("per_second", [1, 20, 80, 1000])
def test_l_plus_one_slots_span_more_than_a_second_plus_the_allowance(per_second: int) -> None:
    """The guarantee's premise: the first and last of L+1 calls are 1 + a seconds apart."""
    p = pacer(0.03)
    assert p.interval(per_second) * per_second == pytest.approx(1.03)
    # so with spread J <= a they cannot share a one-second window at Meta
    assert p.interval(per_second) * per_second - 0.03 >= 1.0 - 1e-12


def test_a_number_without_a_positive_limit_is_paced_as_one_per_second() -> None:
    assert pacer(0.0).interval(0) == 1.0
    assert pacer(0.0).interval(-5) == 1.0


def test_the_clock_offset_intersects_readings() -> None:
    clock = ClockOffset()
    # database clock 100.0 read while this clock went 10.0 -> 10.02: theta in [89.98, 90.0]
    assert clock.sample(100.0, 10.0, 10.02) == pytest.approx((89.98, 90.0))
    # a tighter later reading narrows it (aged by drift only)
    lo, hi = clock.sample(101.005, 11.0, 11.01)
    assert lo == pytest.approx(89.995)
    assert hi == pytest.approx(min(90.005, 90.0 + MAX_DRIFT * (11.01 - 10.02)))
    assert hi - lo < 0.01


def test_a_stepped_clock_starts_again_from_the_new_reading() -> None:
    clock = ClockOffset()
    clock.sample(100.0, 10.0, 10.01)
    # the database clock jumped an hour: intersection empty, so trust the reading alone
    assert clock.sample(3701.0, 11.0, 11.01) == pytest.approx((3689.99, 3690.0))


def test_old_readings_widen_with_drift() -> None:
    clock = ClockOffset()
    clock.sample(100.0, 10.0, 10.0)  # an exact reading: theta == 90
    # 10,000 s later a loose reading ([75, 105]) keeps the old one, widened by drift
    lo, hi = clock.sample(10_105.0, 10_000.0, 10_030.0)
    assert lo == pytest.approx(90.0 - MAX_DRIFT * 10_020.0)
    assert hi == pytest.approx(90.0 + MAX_DRIFT * 10_020.0)


async def test_a_call_on_time_for_its_slot_sleeps_until_it_and_goes() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    p = pacer(0.03, sleep)
    now = time.monotonic()
    # reserved: the database pacer would be reached only for a late call (it has no db)
    waited = await p.go(Slot(earliest=now - 0.001, at=now + 0.05), uuid.uuid4(), 80)
    assert len(slept) == 1
    assert 0 < slept[0] <= 0.05
    assert waited >= 0


async def test_a_late_call_within_its_reserved_span_still_goes() -> None:
    p = pacer(0.03)
    now = time.monotonic()
    # four slots reserved (span 3T), the first 30 ms ago: still inside span + b
    slot = Slot(earliest=now - 0.03, at=now - 0.03, span=3 * p.interval(80))
    assert await p.go(slot, uuid.uuid4(), 80) >= 0


def test_the_leaving_budget_is_a_third_of_the_allowance() -> None:
    assert pytest.approx(0.01) == 0.03 * LEAVE_SHARE
