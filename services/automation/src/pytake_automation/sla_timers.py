"""The worker firing due SLA timers (kinds ``sla_first_response`` / ``sla_resolution`` of
the shared ``timers`` table).

Safe on every replica at once: each timer is claimed (``FOR UPDATE SKIP LOCKED``) and
deleted in the transaction that breaches its target, so a timer fires once; a crash
before the commit leaves it for the next poll, and :func:`pytake_automation.sla.fire`
re-checks the cycle, so firing again never reports a breach twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import delete, select

from pytake_automation import sla
from pytake_automation.config import Settings
from pytake_automation.tables import timers
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database

log = logging.getLogger(__name__)


async def fire_due(db: Database, now: datetime | None = None, limit: int = 100) -> int:
    """Fire the SLA timers due at ``now``; how many reported a breach."""
    now = now or datetime.now(UTC)
    kinds = tuple(sla.TIMER_KINDS)
    async with db.transaction(bypass_rls=True) as session:
        due = (
            await session.execute(
                select(timers.c.id, timers.c.organization_id)
                .where(timers.c.kind.in_(kinds), timers.c.due_at <= now)
                .order_by(timers.c.due_at)
                .limit(limit)
            )
        ).all()
    breached = 0
    for timer_id, org in due:
        async with db.transaction(organization_id=org) as session:
            claimed = (
                await session.execute(
                    select(timers)
                    .where(timers.c.id == timer_id, timers.c.due_at <= now)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if claimed is None:
                continue  # another replica has it, or it was re-armed later
            await session.execute(delete(timers).where(timers.c.id == timer_id))
            if await sla.fire(session, claimed, now) is not None:
                breached += 1
    return breached


class SlaTimers:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                breached = await fire_due(self.db, limit=self.settings.timer_batch)
                if breached:
                    log.info("sla targets breached", extra={"count": breached})
            except Exception as exc:
                log.warning("sla timers failed", extra={"error": repr(exc)})
            await sleep_or_stop(stop, self.settings.timer_poll_interval_s)
