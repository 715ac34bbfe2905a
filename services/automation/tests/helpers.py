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


# --- conversations' events, as conversations publishes them ---------------------------------


class Chat:
    """One conversation of one organization, and the events conversations would publish."""

    def __init__(self, org: uuid.UUID, *, number_id: uuid.UUID | None = None) -> None:
        self.org = org
        self.id = uuid.uuid4()
        self.contact_id = uuid.uuid4()
        self.number_id = number_id or uuid.uuid4()

    def opened(self, at: datetime | None = None, started_by: uuid.UUID | None = None) -> CloudEvent:
        return internal(
            "pytake.conversations.conversation.opened.v1",
            self.org,
            self.id,
            conversation_id=self.id,
            contact_id=self.contact_id,
            number_id=self.number_id,
            opened_at=at or now(),
            started_by=started_by,
        )

    def says(self, text: str = "hello", at: datetime | None = None, **extra: Any) -> CloudEvent:
        message = uuid.uuid4()
        return internal(
            "pytake.conversations.message.appended.v1",
            self.org,
            message,
            message_id=message,
            conversation_id=self.id,
            contact_id=self.contact_id,
            direction="inbound",
            type="text",
            text=text,
            created_at=at or now(),
            **extra,
        )

    def replied(
        self,
        sender_type: str = "user",
        sender_id: uuid.UUID | None = None,
        at: datetime | None = None,
    ) -> CloudEvent:
        message = uuid.uuid4()
        return internal(
            "pytake.conversations.message.appended.v1",
            self.org,
            message,
            message_id=message,
            conversation_id=self.id,
            contact_id=self.contact_id,
            direction="outbound",
            type="text",
            text="on it",
            sender_type=sender_type,
            sender_id=sender_id or uuid.uuid4(),
            created_at=at or now(),
        )

    def moved(self, old: str, new: str, actor_id: uuid.UUID | None = None) -> CloudEvent:
        return internal(
            "pytake.conversations.conversation.status_changed.v1",
            self.org,
            self.id,
            conversation_id=self.id,
            contact_id=self.contact_id,
            old_status=old,
            new_status=new,
            changed_by=None,
            at=now(),
            actor_type="automation" if actor_id else None,
            actor_id=actor_id,
        )

    def assigned(
        self,
        assignee: uuid.UUID | None,
        department: uuid.UUID | None = None,
        actor_id: uuid.UUID | None = None,
    ) -> CloudEvent:
        return internal(
            "pytake.conversations.conversation.assigned.v1",
            self.org,
            self.id,
            conversation_id=self.id,
            contact_id=self.contact_id,
            assignee_id=assignee,
            department_id=department,
            assigned_by=None,
            at=now(),
            actor_type="automation" if actor_id else None,
            actor_id=actor_id,
        )

    def tagged(self, tag_id: uuid.UUID) -> CloudEvent:
        return internal(
            "pytake.contacts.contact.tagged.v1",
            self.org,
            self.contact_id,
            contact_id=self.contact_id,
            tag_id=tag_id,
        )

    def contact(self, name: str = "Ana", **attributes: Any) -> CloudEvent:
        return internal(
            "pytake.contacts.contact.created.v1",
            self.org,
            self.contact_id,
            contact_id=self.contact_id,
            wa_id="5511999990000",
            user_id=None,
            name=name,
            phone="+5511999990000",
            attributes=attributes,
        )


def org_settings(org: uuid.UUID, **settings: Any) -> CloudEvent:
    return internal(
        "pytake.tenants.organization.updated.v1",
        org,
        org,
        name="Acme",
        slug="acme",
        plan="free",
        status="active",
        settings={"timezone": "UTC", "business_hours": {}, **settings},
    )


#: open every day, all day (UTC)
ALWAYS = {
    day: [{"start": "00:00", "end": "23:59:59"}]
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}
#: open one minute a week, Monday 00:00 UTC (so: closed in every test)
NEVER = {"monday": [{"start": "00:00", "end": "00:01"}]}


async def requested(app: Any, org: uuid.UUID) -> list[dict[str, Any]]:
    """The actions_requested automation staged for ``org``, in order (outbox)."""
    from sqlalchemy import select

    from pytake_common.mechanics import outbox

    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [
        e["data"]
        for e in events
        if e["tenantid"] == str(org) and e["type"].endswith("actions_requested.v1")
    ]


def kinds(batches: list[dict[str, Any]]) -> list[list[str]]:
    return [[a["type"] for a in b["actions"]] for b in batches]


async def make_rule(client: Any, tokens: Any, org: uuid.UUID, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "rule")
    body.setdefault("trigger", {"type": "message_received"})
    body.setdefault("actions", [{"type": "set_priority", "priority": "high"}])
    r = await client.post(
        "/v1/automation/rules",
        json=body,
        headers=tokens.headers(organization_id=org, role="org_admin"),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())
