"""automation's actions_requested applied by contacts: tags by id or name, attributes;
each action once (redelivery), in order, a failing one recorded without stopping the rest."""

import uuid

from sqlalchemy import select

from pytake_common.events import CloudEvent
from pytake_contacts.tables import automation_actions

from .helpers import create_contact, deliver, emitted


def requested(org, contact_id, *actions) -> CloudEvent:
    conv = uuid.uuid4()
    return CloudEvent(
        source="pytake/automation",
        type="pytake.automation.session.actions_requested.v1",
        subject=str(conv),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "conversation_id": str(conv),
            "contact_id": str(contact_id),
            "number_id": None,
            "source": {"kind": "rule", "id": str(uuid.uuid4()), "run_id": str(uuid.uuid4())},
            "actions": [{"action_id": str(uuid.uuid4()), **a} for a in actions],
        },
    )


async def outcomes(app, org) -> list[tuple[str, str]]:
    async with app.state.db.transaction(organization_id=org) as s:
        rows = (
            await s.execute(select(automation_actions).order_by(automation_actions.c.applied_at))
        ).all()
    return sorted((r.type, r.outcome) for r in rows)


async def test_tags_and_attributes_once_each(app, client, org, agent, admin):
    tag = (await client.post("/v1/tags", json={"name": "VIP"}, headers=admin)).json()
    other = (await client.post("/v1/tags", json={"name": "Lead"}, headers=admin)).json()
    r = await client.post(
        "/v1/contact-attributes",
        json={"key": "plan", "label": "Plan", "type": "text"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    contact = await create_contact(client, agent, phone="+14155550199", name="Rita")
    await client.put(f"/v1/contacts/{contact['id']}/tags/{other['id']}", headers=agent)
    ev = requested(
        org,
        contact["id"],
        {"type": "send_text", "text": "not ours"},
        {"type": "add_tag", "tag_name": "vip"},
        {"type": "remove_tag", "tag_id": other["id"]},
        {"type": "add_tag", "tag_name": "no such tag"},
        {"type": "set_attribute", "key": "plan", "value": "gold"},
    )
    await deliver(app, ev)
    await deliver(app, ev.model_copy(update={"id": uuid.uuid4()}))  # republished
    got = (await client.get(f"/v1/contacts/{contact['id']}", headers=agent)).json()
    assert [t["name"] for t in got["tags"]] == ["VIP"]
    assert got["attributes"] == {"plan": "gold"}
    assert await outcomes(app, org) == [
        ("add_tag", "applied"),
        ("add_tag", "unknown_tag"),
        ("remove_tag", "applied"),
        ("set_attribute", "applied"),
    ]
    types = [
        e["type"].rsplit(".", 2)[-2] for e in await emitted(app, org, "pytake.contacts.contact.")
    ]
    assert types.count("tagged") == 2 and types.count("untagged") == 1
    updated = [e for e in await emitted(app, org, "pytake.contacts.contact.updated")]
    assert updated[-1]["data"]["attributes"] == {"plan": "gold"}
    assert tag["id"] in [t["id"] for t in got["tags"]]


async def test_another_organizations_contact_is_not_touched(app, client, org, agent, admin):
    contact = await create_contact(client, agent, phone="+14155550198")
    stranger = uuid.uuid4()
    await deliver(
        app, requested(stranger, contact["id"], {"type": "set_attribute", "key": "k", "value": 1})
    )
    assert await outcomes(app, stranger) == [("set_attribute", "not_found")]
