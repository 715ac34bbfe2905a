"""Replicas from contacts' and whatsapp-gateway's events: idempotent, order-tolerant."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pytake_campaigns.tables import contact_replicas, contact_tags, number_replicas
from pytake_common import event_types as et

from .helpers import (
    World,
    again,
    consent,
    contact_created,
    create_campaign,
    deliver,
    internal,
    tagged,
)


async def _contact(app, contact_id):
    async with app.state.db.transaction(bypass_rls=True) as s:
        stmt = select(contact_replicas).where(contact_replicas.c.id == contact_id)
        return (await s.execute(stmt)).mappings().one()


async def test_contact_facts_twice_and_late(app, settings):
    org, cid = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    created = contact_created(org, cid, name="Ana", attributes={"city": "Recife"})
    opt_in = consent(org, cid, True, now)
    stale_opt_out = consent(org, cid, False, now - timedelta(minutes=1))
    assigned = internal(
        et.CONTACTS_CONTACT_ASSIGNED_V1, org, cid, contact_id=cid, assignee_id=uuid.uuid4()
    )
    await deliver(
        app, settings, created, again(created), opt_in, stale_opt_out, again(opt_in), assigned
    )
    row = await _contact(app, cid)
    assert row["name"] == "Ana" and row["attributes"] == {"city": "Recife"}
    assert row["marketing_opt_in"] is True  # the older opt-out arrived late: ignored
    assert row["assignee_id"] is not None and row["created_at"] is not None
    blocked = internal(
        et.CONTACTS_CONTACT_BLOCKED_V1,
        org,
        cid,
        contact_id=cid,
        reason=None,
        blocked_at=now,
        blocked_by=uuid.uuid4(),
    )
    unblocked = internal(
        et.CONTACTS_CONTACT_UNBLOCKED_V1,
        org,
        cid,
        contact_id=cid,
        unblocked_at=now + timedelta(seconds=1),
        unblocked_by=uuid.uuid4(),
    )
    await deliver(app, settings, unblocked, blocked)  # out of order
    assert (await _contact(app, cid))["blocked"] is False
    tag = uuid.uuid4()
    erased = internal(et.CONTACTS_CONTACT_ERASED_V1, org, cid, contact_id=cid, erased_at=now)
    await deliver(app, settings, tagged(org, cid, tag), erased, again(erased))
    row = await _contact(app, cid)
    assert row["erased_at"] is not None and row["name"] is None and row["wa_id"] is None
    assert row["marketing_opt_in"] is False
    async with app.state.db.transaction(bypass_rls=True) as s:
        tags = (await s.execute(select(contact_tags).where(contact_tags.c.contact_id == cid))).all()
    assert tags == []


async def test_tag_deletion_empties_the_tag_and_refuses_it(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=2)
    deleted = internal(et.CONTACTS_TAG_DELETED_V1, w.org, w.tag, tag_id=w.tag)
    await deliver(app, settings, deleted, again(deleted))
    async with app.state.db.transaction(bypass_rls=True) as s:
        left = (await s.execute(select(contact_tags).where(contact_tags.c.tag_id == w.tag))).all()
    assert left == []
    r = await client.post(
        "/v1/campaigns", json=w.body(), headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 422 and r.json()["code"] == "unknown_tag"


async def test_numbers_tier_throughput_and_removal(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=0, tier="TIER_10K", throughput=250)
    async with app.state.db.transaction(bypass_rls=True) as s:
        stmt = select(number_replicas).where(number_replicas.c.id == w.number)
        row = (await s.execute(stmt)).mappings().one()
    assert row["messaging_limit_tier"] == "TIER_10K" and row["throughput_per_second"] == 250
    assert row["waba_id"] == "WABA1" and row["status"] == "connected"
    await create_campaign(client, tokens, w)
    removed = internal(
        et.WHATSAPP_NUMBER_REMOVED_V1, w.org, w.number, number_id=w.number, phone_number_id="1111"
    )
    await deliver(app, settings, removed, again(removed))
    r = await client.post(
        "/v1/campaigns", json=w.body(), headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 404


async def test_data_of_another_organization_is_refused(app, settings):
    org, stranger, cid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    forged = contact_created(org, cid)
    forged.data["organization_id"] = str(stranger)  # data naming another tenant
    await deliver(app, settings, forged)
    async with app.state.db.transaction(bypass_rls=True) as s:
        stmt = select(contact_replicas).where(contact_replicas.c.id == cid)
        assert (await s.execute(stmt)).first() is None
