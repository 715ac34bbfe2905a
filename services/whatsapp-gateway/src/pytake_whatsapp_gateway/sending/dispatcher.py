"""The send queue: requests recorded by the consumer, sent concurrently by dispatchers.

The consumer only records a request (``send_queue``, in its inbox transaction),
so a number paced at its throughput never holds up other tenants' messages on
the same partition. Dispatchers (one per replica, ``send_concurrency`` sends in
flight each) take requests with a lease (``FOR UPDATE SKIP LOCKED``), only the
oldest request of each (number, recipient) at a time, so a customer receives
messages in the order they were asked for. The exactly-once rules live in
:class:`~pytake_whatsapp_gateway.sending.sender.Sender`; a request is deleted
once its outcome is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender
from pytake_whatsapp_gateway.tables import send_queue

log = logging.getLogger(__name__)

_TAKE = text(
    """
    UPDATE send_queue SET taken_until = clock_timestamp() + make_interval(secs => :lease)
    WHERE seq IN (
      SELECT q.seq FROM send_queue q
      WHERE q.not_before <= clock_timestamp()
        AND (q.taken_until IS NULL OR q.taken_until < clock_timestamp())
        AND NOT EXISTS (
          SELECT 1 FROM send_queue p
          WHERE p.number_id = q.number_id AND p.recipient_key = q.recipient_key
            AND p.seq < q.seq)
      ORDER BY q.seq
      LIMIT :n
      FOR UPDATE SKIP LOCKED)
    RETURNING seq, number_id, recipient_key, request
    """
)


def recipient_key(number_id: object, to: str) -> str:
    return hashlib.sha256(f"{number_id}:{to}".encode()).hexdigest()


async def enqueue(session: AsyncSession, out: Outbound) -> bool:
    """Record a send request in the caller's transaction; False if it is known already."""
    inserted = (
        await session.execute(
            pg_insert(send_queue)
            .values(
                message_id=out.message_id,
                organization_id=out.organization_id,
                number_id=out.number_id,
                recipient_key=recipient_key(out.number_id, out.to),
                request=out.to_json(),
            )
            .on_conflict_do_nothing(index_elements=[send_queue.c.message_id])
            .returning(send_queue.c.seq)
        )
    ).first()
    return inserted is not None


class Dispatcher:
    def __init__(self, settings: Settings, db: Database, sender: Sender) -> None:
        self.settings = settings
        self.db = db
        self.sender = sender
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                taken = await self.dispatch_once()
            except Exception as exc:  # the database restarting, ...: keep the worker alive
                log.warning("send dispatcher error", extra={"error": repr(exc)})
                taken = 0
            if taken == 0 or len(self._tasks) >= self.settings.send_concurrency:
                await sleep_or_stop(stop, self.settings.send_poll_interval_s)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def dispatch_once(self) -> int:
        """Take as many requests as there are free send slots and start them."""
        free = self.settings.send_concurrency - len(self._tasks)
        if free <= 0:
            return 0
        async with self.db.transaction(bypass_rls=True) as session:
            rows = (
                await session.execute(_TAKE, {"n": free, "lease": self.settings.send_lease_s})
            ).all()
        for row in rows:
            task = asyncio.create_task(self._handle(row.seq, row.recipient_key, row.request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(rows)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Send everything due now and wait for it (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            while await self.dispatch_once() or self._tasks:
                if self._tasks:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _handle(self, seq: int, key: str, request: dict[str, Any]) -> None:
        out = Outbound.from_json(request)
        try:
            # The sender deletes the request in the transaction that settles it.
            again = await self.sender.send(out, queue_seq=seq, pair_key=key)
            if again is not None:
                # Meta's pair rate, or unconfirmed: back to the queue (still first for
                # this customer) until it admits, or Meta's status webhook settles it
                # or the window ends.
                await self._release(seq, again)
                return
        except Exception as exc:
            log.warning(
                "send attempt failed, requeued",
                extra={"message_id": str(out.message_id), "error": repr(exc)},
            )
            await self._release(seq, 1.0)

    async def _release(self, seq: int, after_s: float) -> None:
        async with self.db.transaction(bypass_rls=True) as session:
            await session.execute(
                update(send_queue)
                .where(send_queue.c.seq == seq)
                .values(
                    taken_until=None,
                    not_before=func.clock_timestamp() + timedelta(seconds=after_s),
                )
            )
