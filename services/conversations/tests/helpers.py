"""Builders of the gateway's events and small helpers for the conversations tests."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from pytake_common.event_types import (
    WHATSAPP_MESSAGE_FAILED_V1,
    WHATSAPP_MESSAGE_RECEIVED_V1,
    WHATSAPP_MESSAGE_SENT_V1,
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
)
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for, message_id_for_wamid
from pytake_common.mechanics import outbox
from pytake_conversations.handlers import HANDLERS
from pytake_conversations.tables import conversations, messages

PHONE_NUMBER_ID = "106540352242922"


def gateway_event(event_type: str, org: uuid.UUID, data: dict, subject: str) -> CloudEvent:
    return CloudEvent(
        source="pytake/whatsapp-gateway",
        type=event_type,
        subject=subject,
        tenantid=str(org),
        data=data,
    )


class Customer:
    """A WhatsApp user writing to one number of one organization."""

    def __init__(
        self, org: uuid.UUID, wa_id: str = "5511987654321", number_id: uuid.UUID | None = None
    ) -> None:
        self.org = org
        self.wa_id = wa_id
        self.number_id = number_id or uuid.uuid4()
        self.contact_id = contact_id_for(org, wa_id)

    def says(
        self,
        text: str = "hello",
        *,
        at: datetime | None = None,
        wamid: str | None = None,
        reply_to_wamid: str | None = None,
    ) -> CloudEvent:
        wamid = wamid or "wamid.HBgM" + uuid.uuid4().hex
        message_id = message_id_for_wamid(PHONE_NUMBER_ID, wamid)
        at = at or datetime.now(UTC).replace(microsecond=0)
        return gateway_event(
            WHATSAPP_MESSAGE_RECEIVED_V1,
            self.org,
            {
                "message_id": str(message_id),
                "wamid": wamid,
                "organization_id": str(self.org),
                "number_id": str(self.number_id),
                "phone_number_id": PHONE_NUMBER_ID,
                "display_phone_number": "15550100",
                "contact_id": str(self.contact_id),
                "wa_id": self.wa_id,
                "user_id": None,
                "profile_name": "Maria",
                "type": "text",
                "text": text,
                "content": {
                    "from": self.wa_id,
                    "id": wamid,
                    "timestamp": str(int(at.timestamp())),
                    "type": "text",
                    "text": {"body": text},
                },
                "context": {"from": "15550100", "id": reply_to_wamid} if reply_to_wamid else None,
                "timestamp": at.isoformat(),
                "a_field_from_the_future": 1,
            },
            subject=str(message_id),
        )


def sent(org, message_id, wamid, at) -> CloudEvent:
    return gateway_event(
        WHATSAPP_MESSAGE_SENT_V1,
        org,
        {
            "message_id": str(message_id),
            "organization_id": str(org),
            "number_id": str(uuid.uuid4()),
            "wamid": wamid,
            "to": "5511987654321",
            "sent_at": at.isoformat(),
        },
        subject=str(message_id),
    )


def failed(org, message_id, at, code=131026, detail="Message undeliverable") -> CloudEvent:
    return gateway_event(
        WHATSAPP_MESSAGE_FAILED_V1,
        org,
        {
            "message_id": str(message_id),
            "organization_id": str(org),
            "number_id": str(uuid.uuid4()),
            "to": "5511987654321",
            "error_code": code,
            "error_title": "Undeliverable",
            "error_detail": detail,
            "retryable": False,
            "failed_at": at.isoformat(),
        },
        subject=str(message_id),
    )


def status(org, status_name, at, *, wamid, message_id=None, errors=(), pricing=None) -> CloudEvent:
    return gateway_event(
        WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
        org,
        {
            "message_id": str(message_id) if message_id else None,
            "wamid": wamid,
            "organization_id": str(org),
            "number_id": str(uuid.uuid4()),
            "status": status_name,
            "timestamp": at.isoformat(),
            "recipient_id": "5511987654321",
            "errors": list(errors),
            **({"pricing": pricing} if pricing is not None else {}),
        },
        subject=wamid,
    )


async def deliver(app, event: CloudEvent) -> None:
    """Run the event's handler as the consumer would: in a transaction bound to the tenant."""
    async with app.state.db.transaction(organization_id=event.tenantid) as s:
        await HANDLERS[event.type](s, event)


async def emitted(app, org, type_suffix: str | None = None) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [
        e
        for e in events
        if e["tenantid"] == str(org) and (type_suffix is None or e["type"].endswith(type_suffix))
    ]


async def conversation_rows(app, org) -> list[dict]:
    async with app.state.db.transaction(organization_id=org) as s:
        rows = await s.execute(select(conversations).order_by(conversations.c.created_at))
        return [dict(r) for r in rows.mappings()]


async def message_rows(app, org) -> list[dict]:
    async with app.state.db.transaction(organization_id=org) as s:
        rows = await s.execute(select(messages).order_by(messages.c.created_at, messages.c.id))
        return [dict(r) for r in rows.mappings()]


async def set_conversation(app, org, conversation_id, **values) -> None:
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            conversations.update().where(conversations.c.id == conversation_id).values(**values)
        )


def platform_event(event_type: str, org: uuid.UUID, data: dict, subject: str = "") -> CloudEvent:
    """An event of another service (auth, tenants, contacts) about organization ``org``."""
    service = event_type.split(".")[1]
    return CloudEvent(
        source=f"pytake/{service}",
        type=event_type,
        subject=subject or str(uuid.uuid4()),
        tenantid=str(org),
        data={"organization_id": str(org), **data},
    )


def user_created(org, user_id, *, role="agent", name="Ana Souza", active=True) -> CloudEvent:
    return platform_event(
        "pytake.auth.user.created.v1",
        org,
        {
            "user_id": str(user_id),
            "email": f"{user_id.hex[:8]}@example.com",
            "full_name": name,
            "role": role,
            "is_active": active,
        },
    )


def department(
    org, dept_id, members, *, event="created", cap=None, strategy="round_robin", **extra
) -> CloudEvent:
    return platform_event(
        f"pytake.tenants.department.{event}.v1",
        org,
        {
            "department_id": str(dept_id),
            "name": "Support",
            "member_ids": [str(m) for m in members],
            "routing": {"strategy": strategy, "max_open_per_agent": cap},
            **extra,
        },
    )


async def opened(app, org, customer=None, text="hello"):
    """A conversation opened by ``customer`` (a new one by default); returns its row."""
    customer = customer or Customer(org, wa_id=f"55119{uuid.uuid4().int % 10**8:08d}")
    await deliver(app, customer.says(text))
    rows = [r for r in await conversation_rows(app, org) if r["contact_id"] == customer.contact_id]
    return rows[-1]
