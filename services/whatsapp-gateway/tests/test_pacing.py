"""The number's throughput schedule (sending/pacing.py) against real PostgreSQL.

A call that leaves too late for its slot reserves more instead of crowding the
next call, and still leaves; two pacers (two replicas) sharing the schedule with a jittery event
loop still never put more than the limit into any one-second window.
"""

import asyncio
import bisect
import random
import time
import uuid

from pytake_whatsapp_gateway.metrics import SLOTS_MISSED
from pytake_whatsapp_gateway.sending.pacing import Pacer

ALLOWANCE_S = 0.03


def missed() -> float:
    return SLOTS_MISSED._value.get()


async def test_a_slot_missed_by_more_than_half_the_allowance_is_not_used(app):
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
    left.sort()
    busiest = max(bisect.bisect_left(left, t + 1.0) - i for i, t in enumerate(left))
    assert busiest <= limit
