"""The consumer: a batch of internal events becomes deliveries in one statement per organization.

The kit's :class:`~pytake_common.consumer.EventConsumer` runs each record's handler in a
savepoint of the batch's transaction (a few statements per record); its set-based
handlers group records by type, which would reorder a conversation's ``opened`` and
``status_changed`` within a batch. Here every record of one organization in a batch is
turned into its public event in Python, and one ``INSERT`` (:func:`queue.fan_out`) queues
all of them for all matching endpoints, in record order (a conversation belongs to one
organization, so its order is kept). The inbox marks of the organization's records are
written first in the same transaction, as the kit does: a redelivered record queues
nothing twice. If that transaction fails, its records go one by one through the kit's
per-record path (the handlers in :data:`~pytake_integrations.handlers.HANDLERS`), with
its retries and dead-lettering.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

from pytake_common import rawpg
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_integrations.config import Settings
from pytake_integrations.handlers import BUILDERS, HANDLERS, public_event
from pytake_integrations.public import PublicEvent
from pytake_integrations.queue import fan_out

log = logging.getLogger(__name__)

GROUP = "integrations"

#: A record of the batch (the kit's item) and the public event it makes, if any.
_Made = tuple[Any, tuple[PublicEvent, str] | None]


class FanOutConsumer(EventConsumer):
    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db, GROUP, HANDLERS)

    async def process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        by_org: dict[str, list[_Made]] = {}
        for record in records:
            item = await self._decode(record)
            if item is None:
                continue
            try:
                public = public_event(item.event, BUILDERS[item.event.type])
            except Exception:
                # the kit's per-record path: a malformed record is dead-lettered at once
                await self._process_item(item)
                continue
            by_org.setdefault(item.event.tenantid, []).append((item, public))
        for org, batch in by_org.items():
            try:
                outcomes = await self._queue(org, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "fan-out failed, handling its records one by one",
                    extra={"group": self.group, "records": len(batch), "error": repr(exc)},
                )
                for failed, _ in batch:
                    await self._process_item(failed)
                continue
            for event, outcome in outcomes:
                self._counted(event, outcome)

    async def _queue(self, org: str, made: list[_Made]) -> list[tuple[CloudEvent, str]]:
        outcomes: list[tuple[CloudEvent, str]] = []
        events: list[tuple[PublicEvent, str]] = []
        async with self.db.transaction(organization_id=org) as session:
            fresh = await self._mark(session, [item for item, _ in made])
            for item, public in made:
                if item.event.id not in fresh:
                    outcomes.append((item.event, "duplicate"))
                    continue
                fresh.discard(item.event.id)  # a second copy in this batch is a duplicate
                outcomes.append((item.event, "handled"))
                if public is not None:
                    events.append(public)
            if events:
                await fan_out(await rawpg.driver(session), uuid.UUID(org), events)
        return outcomes
