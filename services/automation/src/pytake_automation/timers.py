"""Due times: no agent reply, unassigned, idle (auto-resolve). A table, not sleeping tasks.

A timer is one row per (conversation, kind, source), armed and cancelled by conversation
events in the inbox's transaction. :class:`TimerWorker` (every replica) claims due rows with
``FOR UPDATE SKIP LOCKED`` in batches, fires each in a savepoint of the claiming transaction
and deletes it there: a crash before the commit leaves the row to fire again, and firing
again is harmless (runs are unique per (source, trigger key), the key naming the arming).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.tables import timers
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database

log = logging.getLogger(__name__)

NO_AGENT_REPLY, UNASSIGNED, IDLE = "no_agent_reply", "unassigned", "idle"


async def arm(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    kind: str,
    source_key: str,
    due_at: datetime,
    armed_by: str,
    *,
    keep_earlier: bool,
) -> None:
    """Set the timer; ``keep_earlier``: an armed one stays (the first unanswered message
    counts), else it moves to ``due_at`` (idle: the last message counts)."""
    stmt = pg_insert(timers).values(
        organization_id=org,
        conversation_id=conversation_id,
        kind=kind,
        source_key=source_key,
        due_at=due_at,
        armed_by=armed_by,
    )
    slot = [timers.c.conversation_id, timers.c.kind, timers.c.source_key]
    if keep_earlier:
        await session.execute(stmt.on_conflict_do_nothing(index_elements=slot))
    else:
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=slot,
                set_={"due_at": stmt.excluded.due_at, "armed_by": stmt.excluded.armed_by},
            )
        )


async def cancel(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, *kinds: str
) -> None:
    stmt = delete(timers).where(
        timers.c.organization_id == org, timers.c.conversation_id == conversation_id
    )
    if kinds:
        stmt = stmt.where(timers.c.kind.in_(kinds))
    await session.execute(stmt)


Fire = Callable[[AsyncSession, Row[Any]], Awaitable[None]]


class TimerWorker:
    def __init__(self, db: Database, fire: Fire, batch: int, poll_interval_s: float) -> None:
        self.db = db
        self.fire = fire
        self.batch = batch
        self.poll_interval_s = poll_interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                fired = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("timer worker error", extra={"error": repr(exc)})
                fired = 0
            if fired < self.batch:
                await sleep_or_stop(stop, self.poll_interval_s)

    async def fire_due(self) -> int:
        """Fire the due timers of one batch; how many were claimed."""
        async with self.db.transaction(bypass_rls=True) as session:
            due = (
                await session.execute(
                    select(timers)
                    .where(timers.c.due_at <= func.now())
                    .order_by(timers.c.due_at)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for timer in due:
                try:
                    async with session.begin_nested():
                        await self.fire(session, timer)
                except Exception as exc:  # one bad timer must not hold the others
                    log.warning(
                        "timer failed; dropped",
                        extra={"timer": timer.id, "kind": timer.kind, "error": repr(exc)},
                    )
                await session.execute(delete(timers).where(timers.c.id == timer.id))
        return len(due)
