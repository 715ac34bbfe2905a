"""What conversations needs to start a conversation: attributes in contacts' events, and a
new conversation's link to the closed one it follows in the contact's timeline."""

import uuid

from .helpers import T0, create_contact, deliver, emitted, event, pages


async def test_contact_events_carry_the_custom_attributes(client, app, org, agent, admin):
    definition = {"key": "city", "label": "City", "type": "text"}
    assert (await client.post("/v1/contact-attributes", json=definition, headers=admin)).is_success
    c = await create_contact(client, agent, phone="+14155550123", attributes={"city": "Recife"})
    r = await client.patch(
        f"/v1/contacts/{c['id']}", json={"attributes": {"city": "Natal"}}, headers=agent
    )
    assert r.status_code == 200, r.text
    created, updated = [e["data"] for e in await emitted(app, org, "pytake.contacts.contact.")]
    assert created["attributes"] == {"city": "Recife"}
    assert (updated["attributes"], updated["changed"]) == ({"city": "Natal"}, ["attributes"])


async def test_the_timeline_links_a_new_conversation_to_the_closed_one(client, app, org, agent):
    c = await create_contact(client, agent, phone="+14155550123")
    before, after, starter = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    data = {"contact_id": c["id"], "number_id": str(uuid.uuid4()), "opened_at": T0.isoformat()}
    first = {"conversation_id": str(before)}
    second = {
        "conversation_id": str(after),
        "previous_conversation_id": str(before),
        "started_by": str(starter),
    }
    for extra in (first, second):
        await deliver(app, event(org, "pytake.conversations.conversation.opened.v1", data | extra))
    items = [
        i for page in await pages(client, f"/v1/contacts/{c['id']}/timeline", agent) for i in page
    ]
    opened = {
        i["data"]["conversation_id"]: i["data"] for i in items if i["kind"] == "conversation.opened"
    }
    assert opened[str(before)]["previous_conversation_id"] is None
    assert opened[str(before)]["started_by"] is None
    assert opened[str(after)]["previous_conversation_id"] == str(before)
    assert opened[str(after)]["started_by"] == str(starter)
