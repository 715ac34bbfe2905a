"""Test support: another service's events, fed to a service's consumer as Kafka would.

``event_of`` builds an event as its producer would publish it (ids and times in JSON
form), ``redelivered`` is the same fact under a new event id (what a republish looks
like), and ``feed`` hands events to a real :class:`~pytake_common.consumer.EventConsumer`
as the records of one partition: the inbox mark and the handler in one transaction,
exactly as when they come from the broker.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent


def as_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def event_of(etype: str, org: uuid.UUID, subject: uuid.UUID | str, **data: Any) -> CloudEvent:
    """An event of type ``etype`` about ``subject`` for organization ``org``."""
    return CloudEvent(
        source=f"pytake/{etype.split('.')[1]}",
        type=etype,
        subject=str(subject),
        tenantid=str(org),
        data={"organization_id": str(org), **{k: as_json(v) for k, v in data.items()}},
    )


def redelivered(original: CloudEvent) -> CloudEvent:
    """The same fact under another event id."""
    return original.model_copy(update={"id": uuid.uuid4()})


def records(events: tuple[CloudEvent, ...] | list[CloudEvent]) -> list[ConsumerRecord[Any, Any]]:
    """``events`` as the records of one partition, in order."""
    out = []
    for offset, event in enumerate(events):
        value = event.to_bytes()
        out.append(
            ConsumerRecord(
                event.topic, 0, offset, 0, 0, event.subject.encode(), value, None, 0, len(value), []
            )
        )
    return out


async def feed(consumer: EventConsumer, *events: CloudEvent) -> None:
    """Each event through ``consumer`` (one record at a time), then close it."""
    try:
        for record in records(events):
            await consumer.process(record)
    finally:
        await consumer.close()
