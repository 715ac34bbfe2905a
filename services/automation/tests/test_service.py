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


async def test_a_business_message_before_its_conversations_opening(app, settings):
    """A campaign's message often reaches automation before its conversation's ``opened``
    (another topic): the replica is made by the message, in one statement, and the opening
    then moves it. The replica ends as in the other order."""
    from .helpers import Chat

    org = uuid.uuid4()
    first, second = Chat(org), Chat(org)
    sent_at = now()
    for _chat, events in (
        (first, [first.replied("campaign", at=sent_at), first.opened(started_by=uuid.uuid4())]),
        (second, [second.opened(started_by=uuid.uuid4()), second.replied("campaign", at=sent_at)]),
    ):
        await deliver(app, settings, *events)
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = {
            r.id: r
            for r in (
                await s.execute(select(conversations).where(conversations.c.organization_id == org))
            ).all()
        }
    for chat in (first, second):
        row = rows[chat.id]
        assert (row.contact_id, row.number_id, row.status) == (
            chat.contact_id,
            chat.number_id,
            "open",
        )
        assert row.started_by_business is True
        assert row.last_message_at == sent_at
        assert row.last_agent_reply_at is None  # a campaign is not an agent


async def test_a_message_naming_another_organizations_conversation_moves_nothing(app, settings):
    import pytest

    from pytake_automation import conversation_state as state
    from pytake_automation.handlers import _fact

    from .helpers import Chat

    theirs = Chat(uuid.uuid4())
    await deliver(app, settings, theirs.opened())
    before = await _replica(app, theirs.id)
    intruder = Chat(uuid.uuid4())
    intruder.id = theirs.id  # another organization's conversation id
    fact = _fact(intruder.replied("user"))
    with pytest.raises(LookupError, match="not this organization's"):
        async with app.state.db.transaction(organization_id=intruder.org) as s:
            await state.on_outbound(s, fact)
    assert await _replica(app, theirs.id) == before
    async with app.state.db.transaction(bypass_rls=True) as s:
        mine = select(conversations).where(conversations.c.organization_id == intruder.org)
        assert (await s.execute(mine)).all() == []


async def _replica(app, conversation_id):
    async with app.state.db.transaction(bypass_rls=True) as s:
        found = select(conversations).where(conversations.c.id == conversation_id)
        return (await s.execute(found)).one()._asdict()
