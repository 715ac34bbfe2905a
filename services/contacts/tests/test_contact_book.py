import uuid

import pytest

from pytake_common.ids import contact_id_for
from pytake_common.tenancy import OrganizationState

from .helpers import deliver, emitted, received, rows


async def test_create_by_phone_lands_inbound_messages_on_the_same_contact(app, client, org, agent):
    body = {"phone": "+55 (11) 98765-4321", "name": " Maria  Silva ", "email": "Maria@Ex.COM"}
    r = await client.post("/v1/contacts", json=body, headers=agent)
    assert r.status_code == 201, r.text
    contact = r.json()
    assert contact["phone"] == "+5511987654321"
    assert contact["wa_id"] == "5511987654321"
    assert contact["id"] == str(contact_id_for(org, "5511987654321"))
    assert (contact["name"], contact["name_source"], contact["email"]) == (
        "Maria Silva",
        "agent",
        "maria@ex.com",
    )
    [created] = await emitted(app, org)
    assert created["type"] == "pytake.contacts.contact.created.v1"
    assert created["data"] == {
        "contact_id": contact["id"],
        "organization_id": str(org),
        "wa_id": "5511987654321",
        "user_id": None,
        "name": "Maria Silva",
        "phone": "+5511987654321",
        "attributes": {},
    }
    # The customer writes: same contact, the agent's name is kept, the interaction counted.
    await deliver(app, received(org, name="Mari"))
    [row] = await rows(app, org)
    assert str(row["id"]) == contact["id"]
    assert row["name"] == "Maria Silva"
    assert row["last_interaction_at"] is not None
    # The same phone again, in another format: 409 with the existing id.
    r = await client.post("/v1/contacts", json={"phone": "5511987654321"}, headers=agent)
    assert r.status_code == 409
    assert r.json()["code"] == "contact_exists"
    assert r.json()["contact_id"] == contact["id"]


async def test_create_is_idempotent_with_a_key(app, client, org, agent):
    headers = agent | {"Idempotency-Key": "k1"}
    first = await client.post("/v1/contacts", json={"phone": "+14155550123"}, headers=headers)
    again = await client.post("/v1/contacts", json={"phone": "+14155550123"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(await rows(app, org)) == 1
    assert len(await emitted(app, org)) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"phone": "+55 11 1234"}, "invalid_phone"),
        ({"phone": "not a phone"}, "invalid_phone"),
        ({"name": "No identifier"}, "invalid_input"),
        ({"phone": "+14155550123", "email": "nope"}, "invalid_input"),
        ({"phone": "+14155550123", "name": "x" * 257}, "invalid_input"),
        ({"phone": "+14155550123", "notes": "x" * 10_001}, "invalid_input"),
        ({"phone": "+14155550123", "attributes": {"plan": "gold"}}, "unknown_attribute"),
        ({"phone": "+14155550123", "surprise": 1}, "invalid_input"),
    ],
)
async def test_invalid_input_is_problem_json_and_changes_nothing(
    app, client, org, agent, body, code
):
    r = await client.post("/v1/contacts", json=body, headers=agent)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert await rows(app, org) == []
    assert await emitted(app, org) == []


async def test_viewer_reads_but_cannot_write(client, tokens, org, agent):
    viewer = tokens.headers(organization_id=org, role="viewer")
    r = await client.post("/v1/contacts", json={"phone": "+14155550123"}, headers=viewer)
    assert r.status_code == 403
    r = await client.post("/v1/contacts", json={"phone": "+14155550123"}, headers=agent)
    cid = r.json()["id"]
    assert (await client.get(f"/v1/contacts/{cid}", headers=viewer)).status_code == 200
    for method, path, body in [
        ("PATCH", f"/v1/contacts/{cid}", {"name": "x"}),
        ("DELETE", f"/v1/contacts/{cid}", None),
        ("POST", f"/v1/contacts/{cid}/block", {}),
        ("POST", f"/v1/contacts/{cid}/unblock", None),
        ("POST", f"/v1/contacts/{cid}/consent", {"marketing_opt_in": True, "source": "x"}),
        ("POST", f"/v1/contacts/{cid}/assign", {"assignee_id": None}),
        ("POST", f"/v1/contacts/{cid}/erase", None),
        ("PUT", f"/v1/contacts/{cid}/tags/{uuid.uuid4()}", None),
        ("POST", "/v1/tags", {"name": "vip"}),
        ("POST", "/v1/contact-attributes", {"key": "k", "label": "K", "type": "text"}),
        ("POST", "/v1/contacts/import", None),
        ("GET", "/v1/contacts/export", None),
    ]:
        r = await client.request(method, path, json=body, headers=viewer)
        assert r.status_code == 403, (method, path)


async def test_patch_merges_attributes_validates_types_and_soft_delete(
    app, client, org, agent, admin
):
    for definition in [
        {"key": "tier", "label": "Tier", "type": "list", "allowed_values": ["gold", "silver"]},
        {"key": "score", "label": "Score", "type": "number"},
        {"key": "birthday", "label": "Birthday", "type": "date"},
        {"key": "vip", "label": "VIP", "type": "boolean"},
        {"key": "site", "label": "Site", "type": "link"},
        {"key": "note", "label": "Note", "type": "text"},
    ]:
        r = await client.post("/v1/contact-attributes", json=definition, headers=admin)
        assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/contact-attributes", json={"key": "tier", "label": "T", "type": "text"}, headers=admin
    )
    assert r.status_code == 409
    r = await client.post(
        "/v1/contact-attributes", json={"key": "l", "label": "L", "type": "list"}, headers=admin
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/contact-attributes", json={"key": "tier2", "label": "T", "type": "text"}, headers=agent
    )
    assert r.status_code == 403

    r = await client.post("/v1/contacts", json={"phone": "+14155550123"}, headers=agent)
    cid = r.json()["id"]
    good = {
        "tier": "gold",
        "score": 4.5,
        "birthday": "1990-02-01",
        "vip": True,
        "site": "https://x.io",
        "note": "hi",
    }
    r = await client.patch(f"/v1/contacts/{cid}", json={"attributes": good}, headers=agent)
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == good
    for bad in [
        {"tier": "bronze"},
        {"score": "4"},
        {"score": True},
        {"birthday": "01/02/1990"},
        {"vip": "yes"},
        {"site": "javascript:alert(1)"},
        {"note": "x" * 1001},
        {"unknown": 1},
    ]:
        r = await client.patch(f"/v1/contacts/{cid}", json={"attributes": bad}, headers=agent)
        assert r.status_code == 422, bad
        assert r.json()["code"] in ("invalid_attribute", "unknown_attribute")
    r = await client.patch(
        f"/v1/contacts/{cid}",
        json={"attributes": {"note": None}, "company": "ACME", "phone": "+1 415 555 0199"},
        headers=agent,
    )
    body = r.json()
    assert "note" not in body["attributes"] and body["attributes"]["tier"] == "gold"
    assert (body["company"], body["phone"], body["wa_id"]) == (
        "ACME",
        "+14155550199",
        "14155550123",
    )
    r = await client.patch(f"/v1/contacts/{cid}", json={"phone": "123"}, headers=agent)
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    updates = [e for e in await emitted(app, org) if e["type"].endswith("updated.v1")]
    assert [e["data"]["changed"] for e in updates] == [
        ["attributes"],
        ["attributes", "company", "phone"],
    ]

    # Deleting a definition removes the values.
    assert (await client.delete("/v1/contact-attributes/tier", headers=admin)).status_code == 204
    assert (
        "tier" not in (await client.get(f"/v1/contacts/{cid}", headers=agent)).json()["attributes"]
    )
    assert (await client.delete("/v1/contact-attributes/tier", headers=admin)).status_code == 404

    # Soft delete: gone from reads and lists; the customer writing again restores it.
    assert (await client.delete(f"/v1/contacts/{cid}", headers=agent)).status_code == 204
    assert (await client.get(f"/v1/contacts/{cid}", headers=agent)).status_code == 404
    assert (await client.get("/v1/contacts", headers=agent)).json()["items"] == []
    await deliver(app, received(org, wa_id="14155550123"))
    r = await client.get(f"/v1/contacts/{cid}", headers=agent)
    assert r.status_code == 200 and r.json()["company"] == "ACME"


async def test_plan_limit_refuses_api_and_import_but_never_inbound(app, client, org, agent):
    app.state.organizations.orgs[org] = OrganizationState(org, limits={"contacts": 2})
    for phone in ("+14155550101", "+14155550102"):
        assert (
            await client.post("/v1/contacts", json={"phone": phone}, headers=agent)
        ).status_code == 201
    r = await client.post("/v1/contacts", json={"phone": "+14155550103"}, headers=agent)
    assert r.status_code == 402
    assert (r.json()["code"], r.json()["allowed"], r.json()["used"]) == (
        "plan_limit_exceeded",
        2,
        2,
    )
    csv_body = "phone,name\n+14155550101,Updated\n+14155550104,New\n"
    r = await client.post(
        "/v1/contacts/import", content=csv_body, headers=agent | {"Content-Type": "text/csv"}
    )
    assert r.json()["updated"] == 1 and r.json()["created"] == 0
    assert r.json()["failed"][0]["row"] == 2
    assert r.json()["failed"][0]["error"].startswith("plan_limit_exceeded")
    await deliver(app, received(org, wa_id="14155550105"))
    assert len(await rows(app, org)) == 3
