"""Flow waits that fell due: claims the ``flow_wait`` rows of the timer table.

Claimed with ``FOR UPDATE SKIP LOCKED`` (replicas share the work) and deleted in the
transaction that feeds the timeout to the session, so a crash leaves the row for the next
poll and a timeout is handled once. Other kinds of rows belong to other workers.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, func, select

from pytake_automation.flows import sessions
from pytake_automation.tables import timers
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database, bind_organization

log = logging.getLogger(__name__)


async def fire_due(db: Database, batch: int = 100) -> int:
    """Handle up to ``batch`` due flow timers, each in a transaction of its own."""
    async with db.transaction(bypass_rls=True) as session:
        due = (
            (
                await session.execute(
                    select(timers.c.id)
                    .where(timers.c.kind == sessions.TIMER_KIND, timers.c.due_at <= func.now())
                    .order_by(timers.c.due_at)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
    fired = 0
    for timer_id in due:
        async with db.transaction(bypass_rls=True) as session:
            row = (
                await session.execute(
                    select(timers)
                    .where(timers.c.id == timer_id, timers.c.due_at <= func.now())
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if row is None:  # another replica has it, or the wait moved on and re-armed it
                continue
            await bind_organization(session, row.organization_id)
            await session.execute(delete(timers).where(timers.c.id == timer_id))
            await sessions.on_timer(
                session, row.organization_id, row.conversation_id, row.source_key, row.armed_by
            )
            fired += 1
    return fired


class FlowTimers:
    def __init__(self, db: Database, interval_s: float, batch: int) -> None:
        self.db, self.interval_s, self.batch = db, interval_s, batch

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await fire_due(self.db, self.batch)
            except Exception as exc:
                log.warning("flow timers failed", extra={"error": repr(exc)})
            await sleep_or_stop(stop, self.interval_s)
