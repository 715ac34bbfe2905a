"""Helpers: other services' events in, through the real idempotent consumer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent


def now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def internal(etype: str, org: uuid.UUID, subject: uuid.UUID, **data: Any) -> CloudEvent:
    return CloudEvent(
        source=f"pytake/{etype.split('.')[1]}",
        type=etype,
        subject=str(subject),
        tenantid=str(org),
        data={"organization_id": str(org), **{k: _json(v) for k, v in data.items()}},
    )


async def deliver(app: Any, settings: Any, *events: CloudEvent) -> None:
    """Through the real idempotent consumer: inbox mark and handler in one transaction."""
    consumer = EventConsumer(settings, app.state.db, "automation", app.state.handlers)
    try:
        for offset, ev in enumerate(events):
            value = ev.to_bytes()
            record = ConsumerRecord(
                ev.topic, 0, offset, 0, 0, ev.subject.encode(), value, None, 0, len(value), []
            )
            await consumer.process(record)
    finally:
        await consumer.close()
