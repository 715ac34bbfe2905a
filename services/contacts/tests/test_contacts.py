import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from pytake_common.consumer import EventConsumer
from pytake_common.event_types import WHATSAPP_MESSAGE_RECEIVED_V1
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for
from pytake_common.mechanics import outbox, processed_events
from pytake_common.migrations import revisions
from pytake_common.pgtenant import asyncpg_dsn
from pytake_contacts.handlers import HANDLERS, on_message_received
from pytake_contacts.tables import contacts

from .conftest import MIGRATIONS
from .helpers import pages

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def received(org, wa_id="5511987654321", name="Maria", at=T0, user_id=None) -> CloudEvent:
    contact_id = contact_id_for(org, wa_id, user_id)
    return CloudEvent(
        source="pytake/whatsapp-gateway",
        type=WHATSAPP_MESSAGE_RECEIVED_V1,
        subject=str(uuid.uuid4()),
        tenantid=str(org),
        data={
            "message_id": str(uuid.uuid4()),
            "wamid": "wamid." + uuid.uuid4().hex,
            "organization_id": str(org),
            "number_id": str(uuid.uuid4()),
            "phone_number_id": "106540352242922",
            "display_phone_number": "15550100",
            "contact_id": str(contact_id),
            "wa_id": wa_id,
            "user_id": user_id,
            "profile_name": name,
            "type": "text",
            "text": "hello",
            "content": {"type": "text", "text": {"body": "hello"}},
            "context": None,
            "timestamp": at.isoformat(),
            "some_future_field": {"ignored": True},
        },
    )


async def handle(app, event):
    async with app.state.db.transaction(organization_id=event.tenantid) as s:
        await on_message_received(s, event)


async def emitted(app, org=None):
    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in events if org is None or e["tenantid"] == str(org)]


async def contact_rows(app, org):
    async with app.state.db.transaction(organization_id=org) as s:
        return (await s.execute(select(contacts))).mappings().all()


async def test_first_message_creates_the_contact_once(app, client, tokens):
    org = uuid.uuid4()
    event = received(org)
    await handle(app, event)
    await handle(app, received(org))  # same person, another message (new event id)
    rows = await contact_rows(app, org)
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == contact_id_for(org, "5511987654321")
    assert row["phone"] == "+5511987654321"
    assert row["name"] == "Maria"
    assert row["name_source"] == "profile"
    assert row["last_interaction_at"] == T0
    events = await emitted(app, org)
    assert [e["type"] for e in events] == ["pytake.contacts.contact.created.v1"]
    assert events[0]["subject"] == str(row["id"])
    assert events[0]["data"] == {
        "contact_id": str(row["id"]),
        "organization_id": str(org),
        "wa_id": "5511987654321",
        "user_id": None,
        "name": "Maria",
        "phone": "+5511987654321",
        "attributes": {},
    }
    r = await client.get(
        f"/v1/contacts/{row['id']}", headers=tokens.headers(organization_id=org, role="viewer")
    )
    assert r.status_code == 200
    assert r.json()["phone"] == "+5511987654321"


async def test_unparseable_wa_id_has_no_phone_and_bsuid_only_contacts_work(app):
    org = uuid.uuid4()
    await handle(app, received(org, wa_id="123"))
    await handle(app, received(org, wa_id=None, user_id="US.13491208655302741918"))
    rows = sorted(await contact_rows(app, org), key=lambda r: r["wa_id"] or "")
    assert [(r["wa_id"], r["user_id"], r["phone"]) for r in rows] == [
        (None, "US.13491208655302741918", None),
        ("123", None, None),
    ]


async def test_profile_name_follows_profile_until_an_agent_names_the_contact(app, client, tokens):
    org = uuid.uuid4()
    await handle(app, received(org, name="Maria", at=T0))
    await handle(app, received(org, name="Maria S.", at=T0 + timedelta(minutes=1)))
    # An older message arriving late neither renames nor moves last_interaction_at back.
    await handle(app, received(org, name="Old Name", at=T0 - timedelta(days=1)))
    [row] = await contact_rows(app, org)
    assert row["name"] == "Maria S."
    assert row["last_interaction_at"] == T0 + timedelta(minutes=1)
    events = await emitted(app, org)
    assert [e["type"].rsplit(".", 2)[1] for e in events] == ["created", "updated"]
    assert events[1]["data"] == {
        "contact_id": str(row["id"]),
        "organization_id": str(org),
        "name": "Maria S.",
        "phone": "+5511987654321",
        "changed": ["name"],
        "attributes": None,  # not carried: the attributes did not change
    }

    viewer = tokens.headers(organization_id=org, role="viewer")
    r = await client.patch(f"/v1/contacts/{row['id']}", json={"name": "VIP"}, headers=viewer)
    assert r.status_code == 403
    agent = tokens.headers(organization_id=org, role="agent")
    r = await client.patch(f"/v1/contacts/{row['id']}", json={"name": "   "}, headers=agent)
    assert r.status_code == 422
    r = await client.patch(
        f"/v1/contacts/{row['id']}", json={"name": " Maria  Silva "}, headers=agent
    )
    assert r.status_code == 200
    assert r.json()["name"] == "Maria Silva"
    assert r.json()["name_source"] == "agent"

    # Now the profile name no longer overwrites it, but the interaction time still moves.
    await handle(app, received(org, name="Mari", at=T0 + timedelta(hours=1)))
    [row] = await contact_rows(app, org)
    assert row["name"] == "Maria Silva"
    assert row["last_interaction_at"] == T0 + timedelta(hours=1)
    events = await emitted(app, org)
    assert [e["type"].rsplit(".", 2)[1] for e in events] == ["created", "updated", "updated"]
    assert events[2]["data"]["name"] == "Maria Silva"


async def test_other_organization_gets_404_everywhere(app, client, tokens):
    mine, other = uuid.uuid4(), uuid.uuid4()
    await handle(app, received(other))
    [row] = await contact_rows(app, other)
    headers = tokens.headers(organization_id=mine, role="org_admin")
    r = await client.get(f"/v1/contacts/{row['id']}", headers=headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.patch(f"/v1/contacts/{row['id']}", json={"name": "X"}, headers=headers)
    assert r.status_code == 404
    r = await client.get("/v1/contacts", headers=headers)
    assert r.json() == {"items": [], "next_cursor": None}
    r = await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=headers)
    assert r.status_code == 404
    r = await client.get("/v1/contacts")
    assert r.status_code == 401


async def test_list_is_paginated_in_a_stable_order_and_searchable(app, client, tokens):
    org = uuid.uuid4()
    for i in range(7):
        await handle(app, received(org, wa_id=f"55119876543{i:02d}", name=f"Customer {i}"))
    headers = tokens.headers(organization_id=org, role="viewer")
    walked = await pages(client, "/v1/contacts", headers, limit=3)
    seen = [c["id"] for page in walked for c in page]
    assert len(walked) == 3
    assert len(seen) == len(set(seen)) == 7
    rows = await contact_rows(app, org)
    expected = [str(r["id"]) for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]
    assert seen == expected

    r = await client.get("/v1/contacts", params={"q": "customer 3"}, headers=headers)
    assert [c["name"] for c in r.json()["items"]] == ["Customer 3"]
    r = await client.get("/v1/contacts", params={"q": "+55119876543"}, headers=headers)
    assert len(r.json()["items"]) == 7
    r = await client.get("/v1/contacts", params={"q": "%"}, headers=headers)
    assert r.json()["items"] == []
    r = await client.get("/v1/contacts", params={"cursor": "garbage"}, headers=headers)
    assert r.status_code == 422


async def test_consumer_handles_the_same_record_delivered_twice_once(app, settings):
    org = uuid.uuid4()
    event = received(org, name="Twice")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(event.topic, event.to_bytes(), key=event.subject.encode())
    finally:
        await producer.stop()
    db = app.state.db
    consumer = EventConsumer(settings, db, f"contacts-{uuid.uuid4().hex[:6]}", HANDLERS)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def marks():
        async with db.transaction(bypass_rls=True) as s:
            return await s.scalar(
                select(func.count())
                .select_from(processed_events)
                .where(processed_events.c.event_id == event.id)
            )

    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not await contact_rows(app, org):
            assert asyncio.get_running_loop().time() < deadline, "event never consumed"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # time for the duplicate to be (not) handled
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 15)
    assert len(await contact_rows(app, org)) == 1
    assert await marks() == 1
    assert [e["type"] for e in await emitted(app, org)] == ["pytake.contacts.contact.created.v1"]


async def test_readiness_waits_for_the_migrations_the_code_needs(app, client, settings):
    """``serve`` gives the app its migration chain: /readyz says "behind" while the
    database is at an older revision of it (a rollout's new pods wait for the migration
    Job), and ok at the head or at a revision the code doesn't know (a newer release)."""
    chain = revisions(MIGRATIONS)
    owner = await asyncpg.connect(asyncpg_dsn(settings.service_database_url()))
    app.state.schema_chain = chain

    async def schema() -> str:
        checks: dict[str, str] = (await client.get("/readyz")).json()["checks"]
        return checks["schema"]

    try:
        assert await schema() == "ok"
        await owner.execute("UPDATE alembic_version SET version_num = $1", chain[-2])
        assert await schema() == f"behind: at {chain[-2]}, this code needs {chain[-1]}"
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        await owner.execute("UPDATE alembic_version SET version_num = 'f00d'")  # newer release
        assert await schema() == "ok"
    finally:
        await owner.execute("UPDATE alembic_version SET version_num = $1", chain[-1])
        await owner.close()
        del app.state.schema_chain
