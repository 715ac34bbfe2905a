"""Throughput limits shared by every replica, kept in PostgreSQL (GCRA).

Per number: each Graph call takes the next slot of the number's schedule,
``(1 + jitter allowance) / throughput_per_second`` seconds after the previous one, in
one row updated atomically (``send_pace.tat``, the theoretical arrival time);
the caller sleeps until its slot. Slots are evenly spaced, so no one-second
window ever holds more than the limit, whichever window a receiver counts in,
and however many replicas send (a per-second counter would let a whole
second's quota leave at once, and two adjacent bursts land in one window).

Per (number, recipient): Meta's pair rate (about one message per 6 s, short
bursts borrowed from future quota). A send is admitted while the recipient's
schedule is less than ``burst`` intervals ahead; otherwise the caller gets how
long to wait, and the message is requeued without taking a slot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from pytake_common.db import Database

_NUMBER_SLOT = text(
    """
    INSERT INTO send_pace (number_id, tat)
    VALUES (:number_id, clock_timestamp() + make_interval(secs => :interval))
    ON CONFLICT (number_id) DO UPDATE
      SET tat = greatest(send_pace.tat, clock_timestamp()) + make_interval(secs => :interval)
    RETURNING extract(epoch FROM send_pace.tat - clock_timestamp())::float8 - :interval
    """
)

_PAIR_ADMIT = text(
    """
    INSERT INTO pair_pace AS p (number_id, recipient_key, tat)
    VALUES (:number_id, :recipient_key, clock_timestamp() + make_interval(secs => :interval))
    ON CONFLICT (number_id, recipient_key) DO UPDATE
      SET tat = greatest(p.tat, clock_timestamp()) + make_interval(secs => :interval)
      WHERE p.tat - clock_timestamp() <= make_interval(secs => :allowance)
    RETURNING p.tat
    """
)

_PAIR_WAIT = text(
    """
    SELECT greatest(
      extract(epoch FROM tat - clock_timestamp())::float8 - :allowance, 0.05)
    FROM pair_pace WHERE number_id = :number_id AND recipient_key = :recipient_key
    """
)


class Pacer:
    def __init__(
        self,
        db: Database,
        *,
        jitter_allowance_s: float,
        pair_interval_s: float,
        pair_burst: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.jitter_allowance_s = jitter_allowance_s
        self.pair_interval_s = pair_interval_s
        self.pair_burst = max(pair_burst, 1)
        self._sleep = sleep

    async def number_slot(self, number_id: uuid.UUID, per_second: int) -> float:
        """Take the number's next send slot and sleep until it; return the wait."""
        interval = (1.0 + self.jitter_allowance_s) / max(per_second, 1)
        async with self.db.transaction(bypass_rls=True) as session:
            wait = float(
                await session.scalar(_NUMBER_SLOT, {"number_id": number_id, "interval": interval})
                or 0.0
            )
        if wait > 0:
            await self._sleep(wait)
        return max(wait, 0.0)

    async def pair_admit(self, number_id: uuid.UUID, recipient_key: str) -> float:
        """0 when a send to this recipient may go now (its slot taken), else seconds to wait."""
        if self.pair_interval_s <= 0:
            return 0.0
        params = {
            "number_id": number_id,
            "recipient_key": recipient_key,
            "interval": self.pair_interval_s,
            "allowance": self.pair_interval_s * (self.pair_burst - 1),
        }
        async with self.db.transaction(bypass_rls=True) as session:
            admitted = (await session.execute(_PAIR_ADMIT, params)).first()
            if admitted is not None:
                return 0.0
            return float(await session.scalar(_PAIR_WAIT, params) or self.pair_interval_s)
