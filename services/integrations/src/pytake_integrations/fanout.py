"""The consumer: a batch's internal events become deliveries in one statement per run.

Every type integrations publishes goes to one ordered
:class:`~pytake_common.consumer.SetHandler` of the kit: each run of a batch's records
of one organization is turned into public events in Python and one ``INSERT``
(:func:`queue.fan_out`) queues all of them for all matching endpoints, in record order
(a conversation belongs to one organization, so its order across types, e.g. its
``opened`` and ``status_changed``, is kept). The kit writes the batch's inbox marks
first in the same transaction (a redelivered record queues nothing twice); if the run
fails, its records go one by one through the same handler (a run of one), with the
kit's retries and dead-lettering.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.consumer import EventConsumer, Handler, SetHandler
from pytake_common.context import organization_id_var
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_integrations.config import Settings
from pytake_integrations.handlers import BUILDERS, public_event
from pytake_integrations.public import PublicEvent
from pytake_integrations.queue import fan_out

GROUP = "integrations"

#: What one record makes: its public event and ordering key, or None.
_Made = tuple[PublicEvent, str] | None


def _made(event: CloudEvent) -> _Made:
    return public_event(event, BUILDERS[event.type])


async def _queue(session: AsyncSession, made: list[_Made]) -> None:
    events = [m for m in made if m is not None]
    if events:
        org = organization_id_var.get()  # the kit binds it to the run's organization
        assert org is not None
        await fan_out(await rawpg.driver(session), uuid.UUID(org), events)


#: One handler for every type, so a run keeps the batch's order across types.
FAN_OUT: SetHandler[Any] = SetHandler(Any, _queue, parse=_made, ordered=True)


def fan_out_handlers() -> dict[str, Handler]:
    return {etype: FAN_OUT for etype in BUILDERS}


class FanOutConsumer(EventConsumer):
    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db, GROUP, fan_out_handlers())
