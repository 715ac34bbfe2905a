import uuid

from sqlalchemy import func, select

from pytake_common.events import CloudEvent
from pytake_common.mechanics import outbox
from pytake_tenants.handlers import USER_REGISTERED, on_user_registered
from pytake_tenants.tables import organizations


def registered(org: uuid.UUID, name: str = "Acme Café") -> CloudEvent:
    user = uuid.uuid4()
    return CloudEvent(
        source="pytake/auth",
        type=USER_REGISTERED,
        subject=str(user),
        tenantid=str(org),
        data={
            "user_id": str(user),
            "organization_id": str(org),
            "organization_name": name,
            "email": "a@example.com",
        },
    )


async def handle(app, event):
    async with app.state.db.transaction(organization_id=event.tenantid) as s:
        await on_user_registered(s, event)


async def test_registration_creates_the_organization_once(app, client, tokens):
    org = uuid.uuid4()
    event = registered(org)
    await handle(app, event)
    await handle(app, registered(org))  # the same registration replayed under a new id
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert await s.scalar(select(func.count()).select_from(organizations)) == 1
        emitted = (await s.execute(select(outbox.c.event))).scalars().all()
    assert [e["type"] for e in emitted] == ["pytake.tenants.organization.created.v1"]
    r = await client.get("/v1/organizations/me", headers=tokens.headers(organization_id=org))
    assert r.status_code == 200
    assert r.json()["slug"] == "acme-cafe"
    assert r.json()["plan"] == "free"


async def test_slug_clash_gets_a_suffix(app):
    a, b = uuid.uuid4(), uuid.uuid4()
    await handle(app, registered(a, "Same Name"))
    await handle(app, registered(b, "Same Name"))
    async with app.state.db.transaction(bypass_rls=True) as s:
        slugs = sorted((await s.execute(select(organizations.c.slug))).scalars())
    assert slugs == sorted(["same-name", f"same-name-{b.hex[:8]}"])


async def test_other_organization_is_not_found_and_viewer_cannot_patch(app, client, tokens):
    mine, other = uuid.uuid4(), uuid.uuid4()
    await handle(app, registered(other, "Other"))
    r = await client.get("/v1/organizations/me", headers=tokens.headers(organization_id=mine))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.patch(
        "/v1/organizations/me",
        json={"name": "X"},
        headers=tokens.headers(organization_id=other, role="viewer"),
    )
    assert r.status_code == 403
    r = await client.patch(
        "/v1/organizations/me",
        json={"name": ""},
        headers=tokens.headers(organization_id=other, role="org_admin"),
    )
    assert r.status_code == 422
    r = await client.patch(
        "/v1/organizations/me",
        json={"name": "Renamed"},
        headers=tokens.headers(organization_id=other, role="org_admin"),
    )
    assert r.status_code == 200 and r.json()["name"] == "Renamed"


async def test_requests_without_a_token_are_refused(client):
    r = await client.get("/v1/organizations/me")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
