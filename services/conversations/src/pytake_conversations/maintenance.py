"""The periodic worker: wakes snoozed conversations, resumes campaign recipients parked
for their contact, prunes old realtime events.

Safe on every replica at once: waking locks each conversation (``SKIP LOCKED``) and
re-checks it, pruning is a plain delete.
"""

import asyncio
import logging
import time
from typing import Any

from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_conversations.campaign_sends import resume_parked
from pytake_conversations.config import Settings
from pytake_conversations.inbox import wake_snoozed
from pytake_conversations.stream import prune

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, settings: Settings, db: Database, directory: Any = None) -> None:
        self.settings = settings
        self.db = db
        #: the organizations' plans and suspension (campaign recipients resumed)
        self.directory = directory

    async def run(self, stop: asyncio.Event) -> None:
        pruned_at = 0.0
        while not stop.is_set():
            try:
                woke = await wake_snoozed(self.db)
                if woke:
                    log.info("snoozed conversations woke", extra={"count": woke})
                resumed = await resume_parked(self.db, self.directory)
                if resumed:
                    log.info("parked campaign recipients resumed", extra={"count": resumed})
                if time.monotonic() - pruned_at > self.settings.stream_prune_interval_s:
                    await prune(self.db)
                    pruned_at = time.monotonic()
            except Exception as exc:
                log.warning("maintenance failed", extra={"error": repr(exc)})
            await sleep_or_stop(stop, self.settings.snooze_check_interval_s)
