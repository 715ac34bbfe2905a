import uuid

from sqlalchemy import func, select

from pytake_tenants.tables import organizations

from .helpers import again, deliver, emitted, new_org, registered


async def test_registration_creates_the_organization_once(app, settings, client, tokens):
    org = uuid.uuid4()
    first = registered(org)
    await deliver(app, settings, first, first)  # the same event twice
    await deliver(app, settings, registered(org))  # the registration replayed under a new id
    await deliver(app, settings, again(first))
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert await s.scalar(select(func.count()).select_from(organizations)) == 1
    [created] = await emitted(app)
    assert created["type"] == "pytake.tenants.organization.created.v1"
    assert created["data"]["plan"] == "free"
    assert created["data"]["limits"]["departments"] == 1
    assert created["data"]["limits"]["agents"] == 2
    assert created["data"]["trial_ends_at"] is None
    r = await client.get("/v1/organizations/me", headers=tokens.headers(organization_id=org))
    assert r.status_code == 200
    body = r.json()
    assert body["slug"] == "acme-cafe"
    assert body["plan"] == "free"
    assert body["limits"]["contacts"] == 500
    assert body["settings"]["timezone"] == "UTC"
    assert body["settings"]["business_hours"]["monday"] == []


async def test_signup_trial_policy_starts_a_trial(app, settings):
    from pytake_tenants.handlers import SignupPolicy, build_handlers

    org = uuid.uuid4()
    handlers = build_handlers(SignupPolicy(trial_plan="professional", trial_days=14))
    await deliver(app, settings, registered(org), handlers=handlers)
    [created] = await emitted(app)
    assert created["data"]["plan"] == "professional"
    assert created["data"]["limits"]["departments"] == 10
    assert created["data"]["trial_ends_at"] is not None


async def test_the_operators_organization_starts_on_the_operators_plan(app, settings):
    """``create-super-admin`` registers the operators' organization: its tooling is not held
    to the free plan's 60 API requests a minute, and no signup trial applies to it."""
    from pytake_tenants.handlers import SignupPolicy, build_handlers

    org, tenant = uuid.uuid4(), uuid.uuid4()
    handlers = build_handlers(SignupPolicy(trial_plan="professional", trial_days=14))
    await deliver(
        app,
        settings,
        registered(org, "PyTake Platform", role="super_admin"),
        registered(tenant),
        handlers=handlers,
    )
    operators, customer = await emitted(app)
    assert operators["data"]["organization_id"] == str(org)
    assert operators["data"]["plan"] == "enterprise"
    assert operators["data"]["limits"]["api_requests_per_minute"] == 6_000
    assert operators["data"]["trial_ends_at"] is None
    assert customer["data"]["plan"] == "professional"  # everyone else: the signup policy
    assert customer["data"]["trial_ends_at"] is not None


async def test_slug_clash_gets_a_suffix(app, settings):
    a, b = uuid.uuid4(), uuid.uuid4()
    await deliver(app, settings, registered(a, "Same Name"), registered(b, "Same Name"))
    async with app.state.db.transaction(bypass_rls=True) as s:
        slugs = sorted((await s.execute(select(organizations.c.slug))).scalars())
    assert slugs == sorted(["same-name", f"same-name-{b.hex[:8]}"])


async def test_other_organization_is_not_found_and_viewer_cannot_patch(
    app, settings, client, tokens
):
    mine = uuid.uuid4()
    other, _ = await new_org(app, settings, "Other")
    r = await client.get("/v1/organizations/me", headers=tokens.headers(organization_id=mine))
    # A token of an organization tenants does not have (yet): never another's data.
    assert r.status_code == 503 and r.json()["code"] == "organization_pending"
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


async def test_settings_and_profile_are_saved_and_announced(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = tokens.headers(organization_id=org)
    r = await client.patch(
        "/v1/organizations/me",
        json={
            "settings": {
                "timezone": "America/Sao_Paulo",
                "language": "pt_BR",
                "business_hours": {
                    "monday": [
                        {"start": "13:00", "end": "18:00"},
                        {"start": "08:00", "end": "12:00"},
                    ],
                    "saturday": [{"start": "09:00", "end": "13:00"}],
                },
                "welcome_message": "Olá! Como podemos ajudar?",
                "away_message": "Estamos fora do horário.",
                "auto_close_after_hours": 48,
                "holidays": [{"date": "2026-12-25", "name": "Natal"}, {"date": "2026-01-01"}],
            },
            "profile": {"legal_name": "Acme LTDA", "country": "BR", "industry": "retail"},
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["settings"]["timezone"] == "America/Sao_Paulo"
    assert [i["start"] for i in body["settings"]["business_hours"]["monday"]] == [
        "08:00:00",
        "13:00:00",
    ]
    assert body["settings"]["auto_close_after_hours"] == 48
    assert body["settings"]["holidays"] == [
        {"date": "2026-01-01", "name": None},
        {"date": "2026-12-25", "name": "Natal"},
    ]
    assert body["profile"]["country"] == "BR"
    # a later patch of one key keeps the others
    r = await client.patch(
        "/v1/organizations/me", json={"settings": {"language": "en"}}, headers=headers
    )
    assert r.json()["settings"]["timezone"] == "America/Sao_Paulo"
    assert r.json()["settings"]["language"] == "en"
    updates = [e for e in await emitted(app) if e["type"].endswith("organization.updated.v1")]
    assert len(updates) == 2
    assert updates[0]["data"]["settings"]["auto_close_after_hours"] == 48
    # an unchanged patch announces nothing
    r = await client.patch(
        "/v1/organizations/me", json={"settings": {"language": "en"}}, headers=headers
    )
    assert r.status_code == 200
    assert len([e for e in await emitted(app) if e["type"].endswith("updated.v1")]) == 2


async def test_invalid_settings_are_refused_and_change_nothing(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = tokens.headers(organization_id=org)
    before = (await client.get("/v1/organizations/me", headers=headers)).json()
    invalid = [
        {"settings": {"timezone": "Mars/Olympus_Mons"}},
        {"settings": {"business_hours": {"monday": [{"start": "18:00", "end": "09:00"}]}}},
        {"settings": {"auto_close_after_hours": -5}},
        {"settings": {"holidays": [{"date": "2026-12-25"}, {"date": "2026-12-25"}]}},
        {"settings": {"holidays": [{"date": "not a date"}]}},
        {"settings": {"timezone": None}},
        {"settings": {"language": "english please"}},
        {"settings": {"business_hours": {"funday": []}}},
        {"name": "Fine", "settings": {"timezone": "Nowhere/Land"}},
        {"profile": {"country": "brazil"}},
    ]
    for body in invalid:
        r = await client.patch("/v1/organizations/me", json=body, headers=headers)
        assert r.status_code == 422, body
        assert r.json()["code"] == "invalid_input"
        assert r.headers["content-type"].startswith("application/problem+json")
    after = (await client.get("/v1/organizations/me", headers=headers)).json()
    assert after == before
    assert [e["type"] for e in await emitted(app)] == ["pytake.tenants.organization.created.v1"]


async def test_plans_are_listed(client, tokens):
    r = await client.get("/v1/plans", headers=tokens.headers(organization_id=uuid.uuid4()))
    assert r.status_code == 200
    plans = {p["name"]: p["limits"] for p in r.json()["items"]}
    assert list(plans) == ["free", "starter", "professional", "enterprise"]
    assert plans["free"]["departments"] == 1
    assert plans["enterprise"]["agents"] is None
    assert set(plans["starter"]) == {
        "agents",
        "numbers",
        "contacts",
        "departments",
        "monthly_business_messages",
        "api_requests_per_minute",
        "webhook_endpoints",
        "campaigns",
        "monthly_campaign_recipients",
    }


async def test_requests_without_a_token_are_refused(client):
    r = await client.get("/v1/organizations/me")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
