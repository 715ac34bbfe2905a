"""A consumer batch's inbound messages, applied at once (pytake_contacts.inbound), end
exactly as the same messages handled one by one: same contacts, same events."""

import uuid
from datetime import timedelta

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import select, update

from pytake_common.consumer import EventConsumer, PermanentError
from pytake_common.event_types import (
    CONVERSATIONS_CONVERSATION_OPENED_V1,
    CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1,
    CONVERSATIONS_MESSAGE_APPENDED_V1,
    WHATSAPP_MESSAGE_RECEIVED_V1,
)
from pytake_contacts import inbound
from pytake_contacts.domain import erased_identifier
from pytake_contacts.handlers import HANDLERS, MessageReceived, on_message_received
from pytake_contacts.tables import contact_interactions, contacts
from pytake_contacts.timeline import Appended

from .helpers import T0, deliver, emitted, event, received

KNOWN, NEW, DELETED, ERASED, LEARNS, AGENT_NAMED = (
    "5511900000001",
    "5511900000002",
    "5511900000003",
    "5511900000004",
    "5511900000005",
    "5511900000006",
)


async def _prepare(app, org):
    """The same contacts in two organizations: known, deleted, erased, user-id-only."""
    for wa_id in (KNOWN, DELETED, ERASED, AGENT_NAMED):
        await deliver(app, received(org, wa_id=wa_id, name="Before", at=T0))
    await deliver(app, received(org, wa_id=None, user_id="US.learns", name="U", at=T0))
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            update(contacts)
            .where(contacts.c.wa_id == DELETED)
            .values(deleted_at=T0 + timedelta(seconds=1))
        )
        await s.execute(
            update(contacts)
            .where(contacts.c.wa_id == ERASED)
            .values(erased_at=T0, wa_id=erased_identifier(org, ERASED), name=None, phone=None)
        )
        await s.execute(
            update(contacts)
            .where(contacts.c.wa_id == AGENT_NAMED)
            .values(name="Set by agent", name_source="agent")
        )


def _batch(org):
    t = [T0 + timedelta(minutes=m) for m in range(10)]
    return [
        received(org, wa_id=KNOWN, name="Ana", at=t[2]),
        received(org, wa_id=NEW, name="Bob", at=t[1]),
        received(org, wa_id=KNOWN, name=None, at=t[3]),  # no name: keeps Ana
        received(org, wa_id=KNOWN, name="Late", at=t[1]),  # older than the last: keeps Ana
        received(org, wa_id=DELETED, name="Back", at=t[2]),  # restored
        received(org, wa_id=NEW, name="Bobby", at=t[4]),  # the new contact renamed
        received(org, wa_id=ERASED, name="Again", at=t[2]),  # recreated, nothing old back
        received(org, wa_id="5511900000005", user_id="US.learns", name="U2", at=t[2]),
        received(org, wa_id=AGENT_NAMED, name="Profile", at=t[5]),  # agent's name stays
        received(org, wa_id=KNOWN, name="Ana", at=t[3]),  # same time, same name: nothing
    ]


async def _state(app, org):
    async with app.state.db.transaction(organization_id=org) as s:
        found = (await s.execute(select(contacts))).mappings().all()
    state = sorted(
        (
            "erased" if r["erased_at"] else (r["wa_id"] or ""),
            r["user_id"] or "",
            r["name"],
            r["name_source"],
            r["phone"],
            r["last_interaction_at"],
            r["deleted_at"] is None,
            r["erased_at"] is None,
        )
        for r in found
    )
    # Each contact's events in order (a contact's events share its key, hence their
    # partition; events of different contacts have no order to keep).
    by_contact: dict[str, list[tuple[object, ...]]] = {}
    for e in await emitted(app, org):
        data = e["data"]
        fact = (e["type"], data.get("wa_id"), data.get("name"), data.get("changed"))
        by_contact.setdefault(e["subject"], []).append(fact)
    events = sorted(by_contact.values(), key=repr)
    return state, events


async def test_a_batch_ends_as_the_same_messages_one_by_one(app):
    one_by_one, at_once = uuid.uuid4(), uuid.uuid4()
    for org in (one_by_one, at_once):
        await _prepare(app, org)
    for ev in _batch(one_by_one):
        async with app.state.db.transaction(organization_id=one_by_one) as s:
            await on_message_received(s, ev)
    batch = [ev.parse_data(MessageReceived) for ev in _batch(at_once)]
    async with app.state.db.transaction(organization_id=at_once) as s:
        await inbound.on_messages_received(s, batch)
    expected, got = await _state(app, one_by_one), await _state(app, at_once)
    assert got == expected
    names = {row[0]: row[2] for row in got[0]}
    assert names[KNOWN] == "Ana" and names[NEW] == "Bobby" and names[AGENT_NAMED] == "Set by agent"
    # the set-based handler is what the consumer runs
    assert getattr(HANDLERS[WHATSAPP_MESSAGE_RECEIVED_V1], "model", None) is MessageReceived


async def test_a_message_naming_no_customer_fails_the_set(app):
    org = uuid.uuid4()
    bad = MessageReceived(contact_id=uuid.uuid4(), organization_id=org, timestamp=T0)
    good = received(org, wa_id=NEW).parse_data(MessageReceived)
    with pytest.raises(PermanentError):
        async with app.state.db.transaction(organization_id=org) as s:
            await inbound.on_messages_received(s, [good, bad])


async def test_appended_facts_land_once_and_move_the_last_interaction_on(app):
    org = uuid.uuid4()
    await deliver(app, received(org, wa_id=KNOWN, at=T0))
    async with app.state.db.transaction(organization_id=org) as s:
        contact_id = (await s.execute(select(contacts.c.id))).scalar_one()
    conversation = uuid.uuid4()

    def appended(direction, minutes):
        return event(
            org,
            CONVERSATIONS_MESSAGE_APPENDED_V1,
            {
                "message_id": str(uuid.uuid4()),
                "conversation_id": str(conversation),
                "contact_id": str(contact_id),
                "direction": direction,
                "type": "text",
                "created_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            },
        )

    events = [appended("inbound", 1), appended("outbound", 7), appended("outbound", 3)]
    rows = [ev.parse_data(Appended) for ev in events]
    for _ in range(2):  # redelivered under the same facts: nothing twice
        async with app.state.db.transaction(organization_id=org) as s:
            await inbound.on_appended_many(s, rows)
    async with app.state.db.transaction(organization_id=org) as s:
        facts = (
            await s.execute(
                select(contact_interactions.c.kind, contact_interactions.c.data).order_by(
                    contact_interactions.c.occurred_at
                )
            )
        ).all()
        last = (await s.execute(select(contacts.c.last_interaction_at))).scalar_one()
    assert [f.kind for f in facts] == ["message.inbound", "message.outbound", "message.outbound"]
    assert facts[0].data["conversation_id"] == str(conversation)
    assert last == T0 + timedelta(minutes=7)


async def test_opened_and_status_facts_of_a_batch_land_once_each(app, settings):
    """conversation.opened and conversation.status_changed are set handlers: a batch's
    facts in one statement per organization, each once (a redelivery in another consumer
    group, past the inbox marks, records nothing again), each organization its own."""
    orgs = [uuid.uuid4(), uuid.uuid4()]
    contact_ids = {}
    for org in orgs:
        await deliver(app, received(org, wa_id=KNOWN, at=T0))
        async with app.state.db.transaction(organization_id=org) as s:
            contact_ids[org] = (await s.execute(select(contacts.c.id))).scalar_one()
    first, second = uuid.uuid4(), uuid.uuid4()

    def opened(org, conversation, minutes, previous=None):
        return event(
            org,
            CONVERSATIONS_CONVERSATION_OPENED_V1,
            {
                "conversation_id": str(conversation),
                "contact_id": str(contact_ids[org]),
                "opened_at": (T0 + timedelta(minutes=minutes)).isoformat(),
                "previous_conversation_id": str(previous) if previous else None,
            },
        )

    closed = event(
        orgs[0],
        CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1,
        {
            "conversation_id": str(first),
            "contact_id": str(contact_ids[orgs[0]]),
            "old_status": "open",
            "new_status": "closed",
            "at": (T0 + timedelta(minutes=2)).isoformat(),
        },
    )
    batch = [
        opened(orgs[0], first, 1),
        opened(orgs[1], uuid.uuid4(), 1),
        closed,
        opened(orgs[0], second, 3, previous=first),
    ]
    records = [
        ConsumerRecord(ev.topic, 0, i, 0, 0, None, value, None, 0, len(value), [])
        for i, ev in enumerate(batch)
        for value in (ev.to_bytes(),)
    ]
    for group in ("contacts-a", "contacts-b"):
        consumer = EventConsumer(settings, app.state.db, group, HANDLERS)
        try:
            await consumer.process_batch(records)
        finally:
            await consumer.close()
    facts = {}
    for org in orgs:
        async with app.state.db.transaction(organization_id=org) as s:
            facts[org] = (
                await s.execute(
                    select(contact_interactions.c.kind, contact_interactions.c.data)
                    .where(contact_interactions.c.kind.like("conversation.%"))
                    .order_by(contact_interactions.c.occurred_at)
                )
            ).all()
    assert [(f.kind, f.data["conversation_id"]) for f in facts[orgs[0]]] == [
        ("conversation.opened", str(first)),
        ("conversation.status_changed", str(first)),
        ("conversation.opened", str(second)),
    ]
    assert facts[orgs[0]][1].data["new_status"] == "closed"
    assert facts[orgs[0]][2].data["previous_conversation_id"] == str(first)
    assert [f.kind for f in facts[orgs[1]]] == ["conversation.opened"]
