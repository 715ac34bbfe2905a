"""The periodic template sync: one replica at a time, every ``template_sync_interval_s``.

Leadership is a session-level PostgreSQL advisory lock held on a dedicated
connection for as long as the replica runs rounds; the others stand by and take
over when that connection goes away. Each round checks the lock connection is
still alive before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib

import asyncpg

from pytake_common.aio import sleep_or_stop
from pytake_common.pgtenant import asyncpg_dsn
from pytake_whatsapp_gateway.templates.service import TemplateService, sync_all

log = logging.getLogger(__name__)

LOCK_KEY = zlib.crc32(b"pytake-whatsapp-gateway-template-sync")
STANDBY_POLL_S = 5.0


class TemplateSyncWorker:
    def __init__(
        self, service: TemplateService, interval_s: float, standby_poll_s: float = STANDBY_POLL_S
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.standby_poll_s = standby_poll_s
        self.active = False
        self.rounds = 0

    async def run(self, stop: asyncio.Event) -> None:
        if self.interval_s <= 0:
            return
        backoff = 1.0
        while not stop.is_set():
            try:
                await self._lead(stop)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "template sync worker error, retrying",
                    extra={"error": repr(exc), "backoff_s": backoff},
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 60.0)

    async def _lead(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(self.service.db.url))
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                await sleep_or_stop(stop, self.standby_poll_s)  # another replica syncs
                if stop.is_set():
                    return
            self.active = True
            while not stop.is_set():
                await conn.fetchval("SELECT 1")  # still the leader (the lock lives with it)
                result = await sync_all(self.service)
                self.rounds += 1
                log.info(
                    "template sync round done",
                    extra={
                        "wabas": result.wabas,
                        "failed": result.failed,
                        "changed": result.changed,
                    },
                )
                await sleep_or_stop(stop, self.interval_s)
        finally:
            self.active = False
            with contextlib.suppress(Exception):
                await conn.close()
