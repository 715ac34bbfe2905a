"""Throughput limits shared by every replica, kept in PostgreSQL (GCRA).

Per number: each Graph call takes the next slot of the number's schedule,
``T = (1 + a) / L`` seconds after the previous one (``L`` the number's
throughput per second, ``a`` the jitter allowance in seconds), in one row
updated atomically (``send_pace.tat``, the theoretical arrival time); the
caller sleeps until its slot. A per-second counter would let a whole second's
quota leave at once, and two adjacent bursts land in one window at Meta.

**The guarantee: never more than L in any one-second window at the receiver,
however many replicas send.** Let ``d = arrival at Meta - slot`` for each call
and ``J`` the spread of ``d`` (largest minus smallest). Slots are ``T`` apart in
the database's clock, so the first and the last of ``L + 1`` calls have slots
``L*T = 1 + a`` seconds apart and arrive at least ``1 + a - J`` seconds apart:
they cannot share a (half-open) one-second window while ``J <= a``. So the
limit holds whenever calls arrive within ``a`` seconds of jitter, whichever
replica took which slot, and whichever second the receiver counts.

``J`` has two parts: leaving late gets a third of ``a`` (``b = a / 3``, 10 ms by
default), travelling the other two thirds:

- *Leaving late* (ours): the slot is converted to this process's clock as an
  interval ``[earliest, at]`` (see :class:`ClockOffset`); the caller sleeps until
  ``at``, so it never leaves early, and checks how late it is against ``earliest``
  on waking and again where its bytes are written: the sender's request body awaits
  :meth:`Departure.at_write` (see ``graph.py``), which on time returns without
  suspending, so nothing that could let another task run lies between that check and
  the socket write. Checking only before calling the HTTP client was not enough: on
  Python 3.11 aiohttp writes a request from a task of its own, which runs only after
  every other task ready at that moment; right after a burst of claims that took tens
  of milliseconds, unmeasured, and the benchmark counted 81 calls in a sliding second
  at an 80/s number. The sleep itself stays before the request: sleeping inside it
  held a kept-alive connection idle for the whole wait, and under load servers closed
  such connections under the write (an unknown outcome, never resent). A call more
  than ``b`` late (a loaded event loop, a slow commit, a paused process) does not use
  its slot: it reserves ``n``
  consecutive slots instead (1, 2, 4, ... up to a second's worth, see below) and
  may leave up to ``(n - 1) * T + b`` after the first. That keeps
  the bound: give the call the virtual slot ``v = min(departure, last reserved
  slot)``; ``v`` is at least ``T`` from any other caller's slot and the call
  leaves at most ``b`` after it, so the argument above holds with ``v``.
  The first retry takes one slot (a passing stall, the usual cause, is over by
  then: the slot is a queue's length ahead), later ones 2, 4, ... Lateness costs
  throughput (the skipped slots), never the limit, and a persistently late
  process still gets every call out.
- *Travelling*, everything after that check: the kernel's and the network's way to
  Meta, and the receiver's queueing before it counts the call: ``a - b``.

Why ``a = 0.03`` s by default (ceiling ``L / 1.03``, 77.7/s for 80/s), split 1:2:
leaving late is measured, so its 10 ms only have to cover the event loop's lag
between the wake-up and the write (a few ms when busy; the slot's place in this
clock is known to about a millisecond, see :class:`ClockOffset`); a call outside
it costs a slot, not the limit. Travelling is not measured and cannot be: its
20 ms are several times the spread of a keep-alive HTTPS call's one-way time on a
healthy path. A smaller ``a`` buys at most 1-2 % of throughput (78.4/s at 0.02 s)
against the one thing Meta punishes.

The schedule never owes slots: ``tat = greatest(tat, now + lead) + T``, so a
number idle for a while does not get a burst; slots are only lost when no call
is waiting for one, which is why every claim takes its first slot in the claim's
own transaction (several calls in flight are always queued on the schedule while
the process keeps up, see the dispatcher). ``lead`` keeps the first slot after
an idle spell (and after the queue ran dry) far enough ahead for the claim to
commit and its caller to wake: taken "now", it was always missed (the commit
alone outlasts ``b``), and a burst began by wasting slots.

Per (number, recipient): Meta's pair rate (about one message per 6 s, short
bursts borrowed from future quota). A send is admitted while the recipient's
schedule is less than ``burst`` intervals ahead; otherwise the caller gets how
long to wait, and the message is requeued without taking a slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from pytake_common import rawpg
from pytake_common.db import Database
from pytake_whatsapp_gateway.metrics import SLOTS_MISSED

log = logging.getLogger(__name__)

#: Reserves ``$2`` seconds of the schedule (``n`` slots), the first at least ``$3`` s
#: from now; returns when the first begins and the database's clock, both as epochs.
_NUMBER_SLOT = """
    INSERT INTO send_pace (number_id, tat)
    VALUES ($1, clock_timestamp() + make_interval(secs => $3::float8 + $2::float8))
    ON CONFLICT (number_id) DO UPDATE
      SET tat = greatest(send_pace.tat, clock_timestamp() + make_interval(secs => $3))
        + make_interval(secs => $2)
    RETURNING extract(epoch FROM send_pace.tat)::float8 - $2 AS first,
      extract(epoch FROM clock_timestamp())::float8 AS db_now
"""

#: :data:`_NUMBER_SLOT`, and the send request ``$4`` (``send_queue.seq``) told when its
#: first slot begins: the dispatcher counts a background request against the number's
#: room in the schedule only until then (sending/dispatcher.py). Same round trip.
_NUMBER_SLOT_QUEUED = f"""
    WITH slot AS ({_NUMBER_SLOT}),
    marked AS (
      UPDATE send_queue SET slot_at = to_timestamp((SELECT first FROM slot))
      WHERE seq = $4)
    SELECT * FROM slot
"""  # noqa: S608 (a constant of this module, no input)

#: The share of the jitter allowance for leaving late (the rest is for travelling).
LEAVE_SHARE = 1 / 3

#: How fast the database's clock and this process's may drift apart at most: NTP
#: slews a clock by up to 500 ppm; unsynchronised crystals drift by tens of ppm.
MAX_DRIFT = 500e-6


class ClockOffset:
    """``theta = database clock - this process's monotonic clock``, as a tight interval.

    A statement reading the database's clock (``db``) between ``t0`` and ``t1`` here
    bounds ``theta`` to ``[db - t1, db - t0]``: as wide as the round trip *as this
    process saw it*, which on a busy event loop includes the wait to be resumed
    (measured under load: 18 ms median among missed slots, against 4 ms of late
    wake-ups; it ate the leaving budget). Every sample's interval holds ``theta``,
    so their intersection does; older ones widen by ``MAX_DRIFT`` per second of
    age. The interval a statement gives is always within its own sample's, so it
    is never looser than that sample alone. An empty intersection means a clock
    stepped (or another database answered): start again from the sample.
    """

    def __init__(self) -> None:
        self._lo = -math.inf
        self._hi = math.inf
        self._at = 0.0

    def sample(self, db: float, t0: float, t1: float) -> tuple[float, float]:
        """Add a reading; the bounds of ``theta`` now."""
        aged = MAX_DRIFT * (t1 - self._at)
        lo, hi = max(db - t1, self._lo - aged), min(db - t0, self._hi + aged)
        if lo > hi:
            lo, hi = db - t1, db - t0
        self._lo, self._hi, self._at = lo, hi, t1
        return lo, hi


#: Admits a send to (number ``$1``, recipient ``$2``) while the pair's schedule is at
#: most ``$4`` s ahead (taking its next ``$3`` s); else how long until it would be.
_PAIR_ADMIT = """
    WITH admitted AS (
      INSERT INTO pair_pace AS p (number_id, recipient_key, tat)
      VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
      ON CONFLICT (number_id, recipient_key) DO UPDATE
        SET tat = greatest(p.tat, clock_timestamp()) + make_interval(secs => $3)
        WHERE p.tat - clock_timestamp() <= make_interval(secs => $4)
      RETURNING 1)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM admitted) THEN 0.0::float8 ELSE coalesce((
      SELECT greatest(extract(epoch FROM tat - clock_timestamp())::float8 - $4, 0.05)
      FROM pair_pace WHERE number_id = $1 AND recipient_key = $2), $3) END
"""


@dataclass(frozen=True, slots=True)
class Slot:
    """Reserved slots, in this process's monotonic clock.

    The first slot begins between ``earliest`` and ``at``; ``span`` is how long after
    it the last reserved slot begins (0 for one slot).
    """

    earliest: float
    at: float
    span: float = 0.0


class Pacer:
    def __init__(
        self,
        db: Database,
        *,
        jitter_allowance_s: float,
        pair_interval_s: float,
        pair_burst: int,
        lead_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.jitter_allowance_s = jitter_allowance_s
        self.pair_interval_s = pair_interval_s
        self.pair_burst = max(pair_burst, 1)
        self.lead_s = max(lead_s, 0.0)
        self._sleep = sleep
        self.clock = ClockOffset()

    def interval(self, per_second: int) -> float:
        """``T``: seconds between two slots of a number allowed ``per_second`` calls."""
        return (1.0 + self.jitter_allowance_s) / max(per_second, 1)

    async def number_slot(self, number_id: uuid.UUID, per_second: int) -> float:
        """Take the number's next send slot and sleep until it; return the wait."""
        return await self.go(None, number_id, per_second)

    async def take_slot(
        self,
        conn: asyncpg.Connection,
        number_id: uuid.UUID,
        per_second: int,
        n: int = 1,
        *,
        queue_seq: int | None = None,
    ) -> Slot:
        """Reserve the number's next ``n`` slots in the caller's transaction (on ``conn``).

        Go with :meth:`departure` (or :meth:`go`) once the transaction committed (the
        slots are the caller's from then on; nobody else can take them meanwhile).
        ``queue_seq``: the send request to tell when its slot begins (``slot_at``).
        """
        interval = self.interval(per_second)
        t0 = time.monotonic()
        if queue_seq is None:
            row = await conn.fetchrow(_NUMBER_SLOT, number_id, interval * n, self.lead_s)
        else:
            row = await conn.fetchrow(
                _NUMBER_SLOT_QUEUED, number_id, interval * n, self.lead_s, queue_seq
            )
        t1 = time.monotonic()
        assert row is not None  # an upsert's RETURNING always has its row
        first, db_now = float(row[0]), float(row[1])
        lo, hi = self.clock.sample(db_now, t0, t1)
        return Slot(earliest=first - hi, at=first - lo, span=interval * (n - 1))

    def departure(
        self,
        slot: Slot | None,
        number_id: uuid.UUID,
        per_second: int,
        *,
        queue_seq: int | None = None,
    ) -> Departure:
        """One call's way through the number's schedule, from ``slot`` (None: take one);
        ``queue_seq``: its send request, told of each slot taken anew."""
        return Departure(self, slot, number_id, per_second, queue_seq)

    async def go(self, slot: Slot | None, number_id: uuid.UUID, per_second: int) -> float:
        """Sleep until ``slot`` (or new ones); return the total wait (see :class:`Departure`)."""
        started = time.monotonic()
        await self.departure(slot, number_id, per_second).wait()
        return time.monotonic() - started

    async def pair_admit(self, number_id: uuid.UUID, recipient_key: str) -> float:
        """0 when a send to this recipient may go now (its slot taken), else seconds to wait."""
        if self.pair_interval_s <= 0:
            return 0.0
        async with rawpg.transaction(self.db, bypass_rls=True) as conn:
            return await self.admit_pair(conn, number_id, recipient_key)

    async def admit_pair(
        self, conn: asyncpg.Connection, number_id: uuid.UUID, recipient_key: str
    ) -> float:
        """:meth:`pair_admit` in the caller's transaction (on ``conn``)."""
        if self.pair_interval_s <= 0:
            return 0.0
        allowance = self.pair_interval_s * (self.pair_burst - 1)
        wait = await conn.fetchval(
            _PAIR_ADMIT, number_id, recipient_key, self.pair_interval_s, allowance
        )
        return float(wait)


class MissedSlot(Exception):
    """A call was too late for its slot right before its bytes were written; it sent
    nothing and has taken no new slot yet (:meth:`Departure.wait` takes them)."""


class Departure:
    """One call's slots on a number's schedule: :meth:`wait` until they begin.

    :meth:`wait` returns right after it found the call on time, without suspending
    again: a caller that writes the call's bytes right after it (no ``await`` in between
    that could let another task run) leaves within the leaving share of its slot.

    A call may leave up to ``LEAVE_SHARE`` of the jitter allowance after the last slot it
    reserved (see the module's docstring). Later, it reserves again: one slot, then twice
    as many each time (at most a second's worth), so even a process that is persistently
    late gets its call out, at the price of the slots it skips.
    """

    __slots__ = ("_n", "_number_id", "_pacer", "_per_second", "_queue_seq", "_slot", "left")

    def __init__(
        self,
        pacer: Pacer,
        slot: Slot | None,
        number_id: uuid.UUID,
        per_second: int,
        queue_seq: int | None = None,
    ) -> None:
        self._pacer = pacer
        self._slot = slot
        self._number_id = number_id
        self._per_second = per_second
        self._queue_seq = queue_seq
        #: Slots to reserve at the next miss (0: none missed yet).
        self._n = 0
        #: When :meth:`at_write` last let the call's bytes go (epoch seconds), else None.
        self.left: float | None = None

    async def wait(self) -> None:
        """Sleep until the reserved slot, reserving (more) first where none is held or
        it is missed; return once the call is on time (see the class)."""
        await self._wait("wakeup")

    async def at_write(self, fresh: bool) -> None:
        """The check again, right before the call's bytes are written (``fresh``: on a new
        connection, not one kept alive from an earlier request). On time, it returns
        without suspending. Late, it takes slots anew: on a new connection it waits for
        them here; on a kept-alive one it raises :class:`MissedSlot` and the caller drops
        the request (nothing of it was sent) and goes again, because a kept-alive
        connection left idle through a wait may be closed by the server under the write,
        and such a call's outcome is unknown."""
        if self._slot is None or not self._on_time():
            if not fresh:
                self._missed("write")
                raise MissedSlot
            await self._wait("write")
        self.left = time.time()

    async def _wait(self, at: str) -> None:
        pacer = self._pacer
        while True:
            if self._slot is None:
                async with rawpg.transaction(pacer.db, bypass_rls=True) as conn:
                    self._slot = await pacer.take_slot(
                        conn,
                        self._number_id,
                        self._per_second,
                        max(self._n, 1),
                        queue_seq=self._queue_seq,
                    )
            wait = self._slot.at - time.monotonic()
            if wait > 0:
                await pacer._sleep(wait)
            if self._on_time():
                return
            self._missed(at)

    def _on_time(self) -> bool:
        slot = self._slot
        assert slot is not None
        late = time.monotonic() - slot.earliest
        return late <= slot.span + self._pacer.jitter_allowance_s * LEAVE_SHARE

    def _missed(self, at: str) -> None:
        SLOTS_MISSED.labels(at).inc()
        log.debug("send slot missed, taking more", extra={"n": max(self._n, 1)})
        self._slot = None
        self._n = min(self._n * 2, max(self._per_second, 1)) if self._n else 1
