"""Helpers: other services' events, delivery through the real inbox, emitted events."""

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_common.mechanics import outbox
from pytake_tenants.handlers import build_handlers

SOURCES = {"auth": "pytake/auth", "whatsapp": "pytake/whatsapp-gateway"}


def event(etype: str, org: uuid.UUID, subject: uuid.UUID, **data: Any) -> CloudEvent:
    service = etype.split(".")[1]
    return CloudEvent(
        source=f"pytake/{service}",
        type=etype,
        subject=str(subject),
        tenantid=str(org),
        data={"organization_id": str(org), **{k: _json(v) for k, v in data.items()}},
    )


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID | datetime):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    return value


def again(original: CloudEvent) -> CloudEvent:
    """The same fact under a new event id (a republish)."""
    return original.model_copy(update={"id": uuid.uuid4()})


def registered(
    org: uuid.UUID,
    name: str = "Acme Café",
    user: uuid.UUID | None = None,
    role: str = "org_admin",
) -> CloudEvent:
    user = user or uuid.uuid4()
    return event(
        "pytake.auth.user.registered.v1",
        org,
        user,
        user_id=user,
        organization_name=name,
        email="a@example.com",
        full_name="Ana Admin",
        role=role,
    )


def user_event(kind: str, org: uuid.UUID, user: uuid.UUID, **data: Any) -> CloudEvent:
    return event(f"pytake.auth.user.{kind}.v1", org, user, user_id=user, **data)


def now() -> datetime:
    return datetime.now(UTC)


def records(events: tuple[CloudEvent, ...]) -> list[ConsumerRecord]:
    """``events`` as the records of one partition, in order."""
    return [
        ConsumerRecord(
            ev.topic, 0, offset, 0, 0, ev.subject.encode(), value, None, 0, len(value), []
        )
        for offset, ev in enumerate(events)
        for value in (ev.to_bytes(),)
    ]


async def deliver(app, settings, *events: CloudEvent, handlers=None) -> None:
    """Through the real idempotent consumer: inbox mark and handler in one transaction."""
    consumer = EventConsumer(settings, app.state.db, "tenants", handlers or build_handlers())
    try:
        for record in records(events):
            await consumer.process(record)
    finally:
        await consumer.close()


async def deliver_batch(app, settings, *events: CloudEvent) -> None:
    """As one consumer batch: set-based handlers take each organization's records at once."""
    consumer = EventConsumer(settings, app.state.db, "tenants", build_handlers())
    try:
        await consumer.process_batch(records(events))
    finally:
        await consumer.close()


async def emitted(app, prefix: str = "pytake.tenants.") -> list[dict[str, Any]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in rows if e["type"].startswith(prefix)]


async def new_org(app, settings, name: str = "Acme") -> tuple[uuid.UUID, uuid.UUID]:
    """A registered organization and its admin user."""
    org, admin = uuid.uuid4(), uuid.uuid4()
    await deliver(app, settings, registered(org, name, admin))
    return org, admin
