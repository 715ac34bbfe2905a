"""Helpers: other services' events in (through the real idempotent consumer), a world to
campaign in (a number, a template, contacts), and reading what campaigns wrote."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text

from pytake_campaigns.handlers import GROUP, handlers
from pytake_campaigns.tables import recipients
from pytake_common import event_types as et
from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_common.mechanics import outbox
from pytake_devstack.feeding import as_json, event_of, feed, redelivered

BODY = "Hello {{1}}, our sale starts {{2}}"


internal = event_of
again = redelivered


async def deliver(app, settings, *events: CloudEvent) -> None:
    """Through the real idempotent consumer: inbox mark and handler in one transaction."""
    await feed(EventConsumer(settings, app.state.db, GROUP, handlers(settings)), *events)


# --- the world --------------------------------------------------------------------------


def number_registered(org, number_id, *, tier: str | None = None, throughput: int | None = None):
    data: dict[str, Any] = {
        "number_id": number_id,
        "phone_number_id": "1111",
        "waba_id": "WABA1",
        "display_phone_number": "+1 555 0100",
    }
    if tier is not None:
        data["messaging_limit_tier"] = tier
    if throughput is not None:
        data["throughput_per_second"] = throughput
    return internal(et.WHATSAPP_NUMBER_REGISTERED_V1, org, number_id, **data)


def template_event(
    org, *, name="sale", language="en_US", category="MARKETING", status="APPROVED", body=BODY
):
    template_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{org}/{name}/{language}")
    return internal(
        et.WHATSAPP_TEMPLATE_STATUS_CHANGED_V1,
        org,
        template_id,
        template_id=template_id,
        number_id=None,
        waba_id="WABA1",
        name=name,
        language=language,
        category=category,
        status=status,
        components=[{"type": "BODY", "text": body}],
    )


def contact_created(org, contact_id, *, name="Ana", wa_id: str | None = None, **extra):
    return internal(
        et.CONTACTS_CONTACT_CREATED_V1,
        org,
        contact_id,
        contact_id=contact_id,
        wa_id=wa_id if wa_id is not None else f"55{contact_id.int % 10**11:011d}",
        user_id=None,
        name=name,
        phone="+55 11 98765-4321",
        attributes=extra.get("attributes", {}),
    )


def consent(org, contact_id, opted_in=True, at: datetime | None = None):
    return internal(
        et.CONTACTS_CONTACT_CONSENT_CHANGED_V1,
        org,
        contact_id,
        contact_id=contact_id,
        marketing_opt_in=opted_in,
        source="test",
        changed_at=at or datetime.now(UTC),
    )


def tagged(org, contact_id, tag_id):
    return internal(
        et.CONTACTS_CONTACT_TAGGED_V1, org, contact_id, contact_id=contact_id, tag_id=tag_id
    )


def tag_created(org, tag_id, name="vip"):
    return internal(
        et.CONTACTS_TAG_CREATED_V1, org, tag_id, tag_id=tag_id, name=name, color="#ff0000"
    )


class World:
    """An organization with a number, an approved MARKETING template and a tag."""

    def __init__(self, org: uuid.UUID | None = None) -> None:
        self.org = org or uuid.uuid4()
        self.number = uuid.uuid4()
        self.tag = uuid.uuid4()
        self.contacts: list[uuid.UUID] = []

    async def build(self, app, settings, contacts: int = 3, *, opted_in: bool = True, **number):
        events = [
            number_registered(self.org, self.number, **number),
            template_event(self.org),
            template_event(self.org, name="notice", category="UTILITY", body="Notice {{1}}"),
            tag_created(self.org, self.tag),
        ]
        for _ in range(contacts):
            cid = uuid.uuid4()
            self.contacts.append(cid)
            events += [contact_created(self.org, cid), tagged(self.org, cid, self.tag)]
            if opted_in:
                events.append(consent(self.org, cid))
        await deliver(app, settings, *events)
        return self

    def body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Black Friday",
            "number_id": str(self.number),
            "template": {
                "name": "sale",
                "language": "en_US",
                "parameters": [{"value": "{{contact.name}}", "default": "friend"}, "today"],
            },
            "audience": {"tags_any": [str(self.tag)]},
        }
        body.update(overrides)
        return body


async def create_campaign(client, tokens, world: World, **overrides: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/campaigns",
        json=world.body(**overrides),
        headers=tokens.headers(organization_id=world.org),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def start_campaign(client, tokens, world: World, campaign_id: str, **body: Any):
    r = await client.post(
        f"/v1/campaigns/{campaign_id}/start",
        json={k: as_json(v) for k, v in body.items()},
        headers=tokens.headers(organization_id=world.org),
    )
    assert r.status_code == 200, r.text
    return r.json()


async def recipient_rows(app, campaign_id) -> list[dict[str, Any]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        stmt = (
            select(recipients)
            .where(recipients.c.campaign_id == uuid.UUID(str(campaign_id)))
            .order_by(recipients.c.seq)
        )
        return [dict(r) for r in (await s.execute(stmt)).mappings().all()]


async def dispatched_events(app, campaign_id=None) -> list[dict[str, Any]]:
    """``recipient.dispatched`` events staged in the outbox (not yet relayed)."""
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [
        e
        for e in rows
        if e["type"] == et.CAMPAIGNS_RECIPIENT_DISPATCHED_V1
        and (campaign_id is None or e["data"]["campaign_id"] == str(campaign_id))
    ]


async def emitted(app, suffix: str) -> list[dict[str, Any]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in rows if e["type"].endswith(suffix)]


async def rewind_credit(app, campaign_id, seconds: float = 1.0) -> None:
    """As if the campaign's last tick was ``seconds`` ago (its bucket refills by then)."""
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            text(
                "UPDATE campaigns SET credit_at = now() - make_interval(secs => :s) WHERE id = :id"
            ),
            {"s": seconds, "id": uuid.UUID(str(campaign_id))},
        )


def send_requested(org, recipient_id, message_id=None, conversation_id=None):
    message_id = message_id or uuid.uuid4()
    return internal(
        et.CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1,
        org,
        message_id,
        message_id=message_id,
        conversation_id=conversation_id or uuid.uuid4(),
        number_id=uuid.uuid4(),
        phone_number_id="1111",
        to="5511",
        type="template",
        context_wamid=None,
        requested_by=uuid.uuid4(),
        priority="campaign",
        recipient_id=recipient_id,
    )


def status_changed(org, message_id, conversation_id, status, **extra):
    return internal(
        et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1,
        org,
        message_id,
        message_id=message_id,
        conversation_id=conversation_id,
        status=status,
        error_code=extra.pop("error_code", None),
        error_detail=extra.pop("error_detail", None),
        at=extra.pop("at", datetime.now(UTC)),
        **extra,
    )


def inbound(org, conversation_id, at: datetime | None = None):
    message_id = uuid.uuid4()
    return internal(
        et.CONVERSATIONS_MESSAGE_APPENDED_V1,
        org,
        message_id,
        message_id=message_id,
        conversation_id=conversation_id,
        contact_id=uuid.uuid4(),
        direction="inbound",
        type="text",
        created_at=at or datetime.now(UTC),
    )


def refused(org, recipient_id, code="consent_required"):
    return internal(
        "pytake.conversations.message.refused.v1",
        org,
        recipient_id,
        recipient_id=recipient_id,
        campaign_id=uuid.uuid4(),
        contact_id=uuid.uuid4(),
        number_id=uuid.uuid4(),
        code=code,
        detail="refused by conversations",
    )
