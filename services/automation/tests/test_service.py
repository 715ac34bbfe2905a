"""The skeleton answers, and the replicas follow their owners' events (each twice)."""

import uuid

from sqlalchemy import select

from pytake_automation.actions import Target, request_actions
from pytake_automation.tables import contacts, conversations
from pytake_common.mechanics import outbox

from .helpers import deliver, internal, now


async def test_health(client):
    r = await client.get("/healthz")
    assert r.status_code == 200


async def test_contact_replica_and_conversation_replica_twice(app, settings):
    org, contact, conv, tag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [
        internal(
            "pytake.contacts.contact.created.v1",
            org,
            contact,
            contact_id=contact,
            wa_id="5511999",
            user_id=None,
            name="Ana",
            phone="+5511999",
            attributes={"plan": "gold"},
        ),
        internal("pytake.contacts.contact.tagged.v1", org, contact, contact_id=contact, tag_id=tag),
        internal(
            "pytake.conversations.conversation.opened.v1",
            org,
            conv,
            conversation_id=conv,
            contact_id=contact,
            number_id=uuid.uuid4(),
            opened_at=now(),
        ),
    ]
    await deliver(app, settings, *events, *events)
    async with app.state.db.transaction(bypass_rls=True) as s:
        c = (await s.execute(select(contacts))).one()
        v = (await s.execute(select(conversations))).one()
    assert (c.name, c.tag_ids, c.attributes) == ("Ana", [tag], {"plan": "gold"})
    assert (v.contact_id, v.status) == (contact, "open")


async def test_request_actions_derives_ids(app):
    org, conv = uuid.uuid4(), uuid.uuid4()
    target = Target(org, conv, uuid.uuid4(), None)
    async with app.state.db.transaction(organization_id=org) as s:
        first = await request_actions(
            s,
            target,
            kind="rule",
            source_id=None,
            source_key="r",
            trigger_key="m1",
            specs=[{"type": "send_text", "text": "hi"}],
        )
        again = await request_actions(
            s,
            target,
            kind="rule",
            source_id=None,
            source_key="r",
            trigger_key="m1",
            specs=[{"type": "send_text", "text": "hi"}],
        )
        rows = (await s.execute(select(outbox.c.key))).all()
    assert first is not None and again is not None
    assert first.actions[0].action_id == again.actions[0].action_id
    assert first.source.run_id == again.source.run_id
    assert {r.key for r in rows} == {str(conv)}
