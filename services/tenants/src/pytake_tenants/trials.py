"""Ended trials fall back to the free plan (announced like any plan change)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import func, select

from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_tenants.organizations import change_plan
from pytake_tenants.plans import DEFAULT_PLAN
from pytake_tenants.tables import organizations

log = logging.getLogger(__name__)


async def expire_trials(db: Database, batch: int = 100) -> list[uuid.UUID]:
    """End every trial whose end has passed; return the organizations moved to free."""
    async with db.transaction(bypass_rls=True) as session:
        due = (
            (
                await session.execute(
                    select(organizations.c.id)
                    .where(organizations.c.trial_ends_at <= func.now())
                    .order_by(organizations.c.trial_ends_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        for org_id in due:
            await change_plan(session, org_id, DEFAULT_PLAN, None, None, check_future=False)
    if due:
        log.info("trials ended", extra={"organizations": len(due)})
    return list(due)


class TrialExpiry:
    def __init__(self, db: Database, interval_s: float) -> None:
        self.db = db
        self.interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await expire_trials(self.db)
            except Exception as exc:
                log.warning("trial expiry failed", extra={"error": repr(exc)})
            await sleep_or_stop(stop, self.interval_s)
