"""Helpers for the event-plumbing tests: a note-counting handler and settings."""

import asyncio
import uuid

from sqlalchemy import text

from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_event
from pytake_common.settings import ServiceSettings


def settings_for(bootstrap: str, service: str) -> ServiceSettings:
    return ServiceSettings(
        service_name=service,
        env="test",
        secret_key="x" * 40,
        kafka_bootstrap=bootstrap,
        kafka_consumer_session_timeout_ms=6000,
        kafka_consumer_heartbeat_ms=500,
        consumer_max_attempts=3,
        consumer_retry_backoff_s=0.01,
        outbox_poll_interval_s=0.2,
    )


def note_event(event_type: str, org: uuid.UUID, note_id: uuid.UUID) -> CloudEvent:
    return CloudEvent(
        source="pytake/test",
        type=event_type,
        subject=str(note_id),
        tenantid=str(org),
        data={"note_id": str(note_id)},
    )


async def write_note_with_event(db: Database, event_type: str, org: uuid.UUID) -> CloudEvent:
    note_id = uuid.uuid4()
    event = note_event(event_type, org, note_id)
    async with db.transaction(organization_id=org) as s:
        await s.execute(
            text("INSERT INTO notes (id, organization_id, body) VALUES (:i, :o, 'n')"),
            {"i": note_id, "o": org},
        )
        await add_event(s, event)
    return event


async def count_hits(db: Database, org: uuid.UUID) -> int:
    async with db.transaction(organization_id=org) as s:
        return int((await s.execute(text("SELECT coalesce(sum(hits), 0) FROM notes"))).scalar_one())


async def hit(session, event: CloudEvent) -> None:
    """Handler: increments the note's counter, so double handling is visible."""
    await session.execute(
        text("UPDATE notes SET hits = hits + 1 WHERE id = :i"),
        {"i": uuid.UUID(event.data["note_id"])},
    )


async def eventually(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)
