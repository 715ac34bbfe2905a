"""/v1/webhook-endpoints: CRUD, roles, other organizations, secrets shown once."""

import uuid

from sqlalchemy import select

from pytake_common.mechanics import idempotency_keys, outbox
from pytake_integrations.tables import endpoints

URL = "https://hooks.example.com/pytake"


async def _create(client, headers, **body):
    body = {"url": URL, "event_types": ["message.received"], **body}
    return await client.post("/v1/webhook-endpoints", json=body, headers=headers)


async def test_create_shows_the_secret_once_and_stores_it_encrypted(app, client, tokens):
    org = uuid.uuid4()
    headers = tokens.headers(organization_id=org)
    r = await _create(client, headers, event_types=["message.read", "message.received"])
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert r.headers["location"] == f"/v1/webhook-endpoints/{created['id']}"
    assert created["event_types"] == ["message.read", "message.received"]
    assert created["status"] == "enabled"

    got = await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=headers)
    assert got.status_code == 200
    assert "secret" not in got.json()

    async with app.state.db.transaction(bypass_rls=True) as s:
        stored = (await s.execute(select(endpoints))).mappings().one()
        events = (await s.execute(select(outbox.c.event))).scalars().all()
    assert created["secret"] not in stored["secret_enc"]
    assert app.state.secret_box.decrypt(stored["secret_enc"]) == created["secret"]
    assert [e["type"] for e in events] == ["pytake.integrations.endpoint.created.v1"]
    assert created["secret"] not in str(events)


async def test_idempotency_key_replays_the_first_answer_and_keeps_it_sealed(app, client, tokens):
    org = uuid.uuid4()
    headers = {**tokens.headers(organization_id=org), "Idempotency-Key": "k-1"}
    first = await _create(client, headers)
    again = await _create(client, headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    listed = await client.get("/v1/webhook-endpoints", headers=headers)
    assert len(listed.json()["items"]) == 1
    other = await _create(client, headers, url="https://other.example.com/")
    assert other.status_code == 422
    async with app.state.db.transaction(bypass_rls=True) as s:
        stored = (await s.execute(select(idempotency_keys.c.response))).scalars().one()
    assert first.json()["secret"] not in str(stored)


async def test_validation_refuses_bad_urls_and_unknown_types(app, client, tokens, settings):
    headers = tokens.headers(organization_id=uuid.uuid4())
    r = await _create(client, headers, event_types=["message.exploded"])
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    r = await _create(client, headers, event_types=[])
    assert r.status_code == 422
    for bad in (
        "ftp://hooks.example.com/",
        "https://user:pw@hooks.example.com/",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.0.1]/",
    ):
        r = await _create(client, headers, url=bad)
        assert r.status_code == 422, (bad, r.text)
    # http and loopback: only with the dev-only setting (on in this suite)
    assert (await _create(client, headers, url="http://127.0.0.1:9/hook")).status_code == 201


async def test_https_only_without_the_dev_setting(settings):
    from httpx import ASGITransport, AsyncClient

    from pytake_devstack.tokens import TokenFactory
    from pytake_integrations.app import create_app

    strict = create_app(settings.model_copy(update={"webhooks_allow_loopback": False}))
    tokens = TokenFactory()
    tokens.install(strict)
    headers = tokens.headers(organization_id=uuid.uuid4())
    try:
        async with AsyncClient(transport=ASGITransport(app=strict), base_url="http://x") as c:
            r = await _create(c, headers, url="http://hooks.example.com/")
            assert r.status_code == 422
            r = await _create(c, headers, url="https://127.0.0.1/")
            assert r.status_code == 422
            assert (await _create(c, headers)).status_code == 201
    finally:
        await strict.state.db.dispose()


def test_loopback_setting_is_refused_in_prod():
    import pytest
    from pydantic import ValidationError

    from pytake_integrations.config import Settings

    with pytest.raises(ValidationError, match="dev-only"):
        Settings(env="prod", secret_key="x" * 40, webhooks_allow_loopback=True)


async def test_roles_and_other_organizations(client, tokens):
    org, other = uuid.uuid4(), uuid.uuid4()
    admin = tokens.headers(organization_id=org)
    created = (await _create(client, admin)).json()
    path = f"/v1/webhook-endpoints/{created['id']}"

    viewer = tokens.headers(organization_id=org, role="viewer")
    assert (await client.get(path, headers=viewer)).status_code == 200
    assert (await client.get("/v1/webhook-endpoints", headers=viewer)).status_code == 200
    assert (await _create(client, viewer)).status_code == 403
    assert (await client.patch(path, json={"url": URL}, headers=viewer)).status_code == 403
    agent = tokens.headers(organization_id=org, role="agent")
    assert (await client.delete(path, headers=agent)).status_code == 403

    stranger = tokens.headers(organization_id=other)
    for method, suffix in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/rotate-secret"),
        ("POST", "/test"),
        ("GET", "/deliveries"),
        ("POST", f"/deliveries/{uuid.uuid4()}/replay"),
    ):
        kwargs = {"json": {}} if method == "PATCH" else {}
        r = await client.request(method, path + suffix, headers=stranger, **kwargs)
        assert r.status_code == 404, (method, suffix, r.text)
    listed = await client.get("/v1/webhook-endpoints", headers=stranger)
    assert listed.json()["items"] == []


async def test_patch_delete_and_pagination(client, tokens):
    headers = tokens.headers(organization_id=uuid.uuid4())
    ids = [(await _create(client, headers)).json()["id"] for _ in range(3)]
    page = (await client.get("/v1/webhook-endpoints?limit=2", headers=headers)).json()
    assert [e["id"] for e in page["items"]] == ids[:2]
    rest = await client.get(
        f"/v1/webhook-endpoints?limit=2&cursor={page['next_cursor']}", headers=headers
    )
    assert [e["id"] for e in rest.json()["items"]] == ids[2:]
    assert rest.json()["next_cursor"] is None
    bad = await client.get("/v1/webhook-endpoints?cursor=bm9wZQ", headers=headers)
    assert bad.status_code == 422

    path = f"/v1/webhook-endpoints/{ids[0]}"
    r = await client.patch(
        path, json={"event_types": ["contact.created"], "status": "disabled"}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["event_types"] == ["contact.created"]
    assert r.json()["status"] == "disabled"
    assert r.json()["disabled_reason"] == "disabled by an admin"
    r = await client.patch(path, json={"status": "enabled"}, headers=headers)
    assert r.json()["status"] == "enabled"
    assert r.json()["disabled_reason"] is None

    assert (await client.delete(path, headers=headers)).status_code == 204
    assert (await client.get(path, headers=headers)).status_code == 404
    assert (await client.delete(path, headers=headers)).status_code == 404


async def test_rotate_secret_keeps_the_previous_one_for_the_overlap(app, client, tokens):
    headers = tokens.headers(organization_id=uuid.uuid4())
    created = (await _create(client, headers)).json()
    path = f"/v1/webhook-endpoints/{created['id']}/rotate-secret"
    r = await client.post(path, json={"overlap_s": 3600}, headers=headers)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    r = await client.post(path, json={"overlap_s": 0}, headers=headers)
    assert r.json()["previous_secret_expires_at"] is None


async def test_the_plan_limits_the_number_of_endpoints(app, client, tokens):
    """The limit comes from tenants' organization events (the directory replica)."""
    from pytake_common.event_types import TENANTS_ORGANIZATION_PLAN_CHANGED_V1
    from pytake_common.events import CloudEvent

    org = uuid.uuid4()
    app.state.organizations.apply(
        CloudEvent(
            source="pytake/tenants",
            type=TENANTS_ORGANIZATION_PLAN_CHANGED_V1,
            subject=str(org),
            tenantid=str(org),
            data={
                "organization_id": str(org),
                "plan": "starter",
                "limits": {"webhook_endpoints": 2},
            },
        )
    )
    headers = tokens.headers(organization_id=org)
    assert (await _create(client, headers)).status_code == 201
    assert (await _create(client, headers)).status_code == 201
    r = await _create(client, headers)
    assert r.status_code == 402
    assert r.json()["code"] == "plan_limit_exceeded"
    assert r.json()["limit"] == "webhook_endpoints"
    # another organization (no limit known: unlimited until tenants says otherwise)
    assert (await _create(client, tokens.headers(organization_id=uuid.uuid4()))).status_code == 201
