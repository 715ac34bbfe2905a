import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from pytake_common.event_types import WHATSAPP_MESSAGE_RECEIVED_V1
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for
from pytake_common.mechanics import outbox
from pytake_contacts.handlers import HANDLERS
from pytake_contacts.tables import contacts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def received(org, wa_id="5511987654321", name="Maria", at=T0, user_id=None) -> CloudEvent:
    return CloudEvent(
        source="pytake/whatsapp-gateway",
        type=WHATSAPP_MESSAGE_RECEIVED_V1,
        subject=str(uuid.uuid4()),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "contact_id": str(contact_id_for(org, wa_id, user_id)),
            "wa_id": wa_id,
            "user_id": user_id,
            "profile_name": name,
            "timestamp": at.isoformat(),
        },
    )


def event(org, type_, data) -> CloudEvent:
    return CloudEvent(
        source="pytake/test",
        type=type_,
        subject=str(uuid.uuid4()),
        tenantid=str(org),
        data={"organization_id": str(org), **data},
    )


async def deliver(app, ev: CloudEvent) -> None:
    async with app.state.db.transaction(organization_id=ev.tenantid) as s:
        await HANDLERS[ev.type](s, ev)


async def emitted(app, org, prefix="pytake.contacts."):
    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in events if e["tenantid"] == str(org) and e["type"].startswith(prefix)]


async def rows(app, org):
    async with app.state.db.transaction(organization_id=org) as s:
        return (await s.execute(select(contacts).order_by(contacts.c.created_at))).mappings().all()


async def create_contact(client, headers, **body):
    r = await client.post("/v1/contacts", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def pages(client, path, headers, **params):
    """Every page of a cursor-paginated list, in order (each answered 200)."""
    found, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        r = await client.get(path, params=query, headers=headers)
        assert r.status_code == 200, r.text
        found.append(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if not cursor:
            return found
