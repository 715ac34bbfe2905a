"""Purges sessions (and, by cascade, their refresh tokens) long after they ended,
and throttle buckets whose windows no longer count.

Spent refresh tokens are kept while their session lives so a replayed one is
recognised as reuse; once the session is revoked or expired for
``session_retention_s`` nothing can use them. Safe on every replica at once
(plain idempotent deletes); platform housekeeping, hence ``bypass_rls``.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_

from pytake_auth.config import Settings
from pytake_auth.tables import sessions
from pytake_auth.throttle import purge_expired
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database

log = logging.getLogger(__name__)


class SessionJanitor:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                purged = await self.purge()
                buckets = await purge_expired(self.db)
                if purged or buckets:
                    log.info(
                        "purged ended sessions and stale throttle buckets",
                        extra={"sessions": purged, "buckets": buckets},
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session purge failed", extra={"error": repr(exc)})
            await sleep_or_stop(stop, self.settings.session_purge_interval_s)

    async def purge(self, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=self.settings.session_retention_s)
        async with self.db.transaction(bypass_rls=True) as session:
            result = await session.execute(
                delete(sessions).where(
                    or_(sessions.c.expires_at < cutoff, sessions.c.revoked_at < cutoff)
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)
