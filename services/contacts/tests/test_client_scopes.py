"""API-client tokens in a service: scopes narrow the role, on every path (fast ones too)."""

import uuid


async def test_a_contacts_read_client_reads_but_cannot_write(client, tokens, org):
    reader = tokens.headers(
        organization_id=org, role="agent", client_id=uuid.uuid4(), scope="contacts:read"
    )
    assert (await client.get("/v1/contacts", headers=reader)).status_code == 200  # fast path
    assert (await client.get("/v1/contacts?limit=5", headers=reader)).status_code == 200
    r = await client.post("/v1/contacts", json={"phone": "+5511987650099"}, headers=reader)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "insufficient_scope"
    assert r.json()["required_scope"] == "contacts:write"
    r = await client.post("/v1/tags", json={"name": "x"}, headers=reader)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"


async def test_other_scopes_open_nothing_here(client, tokens, org):
    other = tokens.headers(
        organization_id=org, role="org_admin", client_id=uuid.uuid4(), scope="messages:send"
    )
    r = await client.get("/v1/contacts", headers=other)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"


async def test_an_unscoped_client_has_its_roles_rights(client, tokens, org):
    writer = tokens.headers(organization_id=org, role="agent", client_id=uuid.uuid4())
    r = await client.post("/v1/contacts", json={"phone": "+5511987650098"}, headers=writer)
    assert r.status_code == 201, r.text
    viewer = tokens.headers(organization_id=org, role="viewer", client_id=uuid.uuid4())
    r = await client.post("/v1/contacts", json={"phone": "+5511987650097"}, headers=viewer)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
