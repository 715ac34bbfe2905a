import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from pytake_tenants.tables import organizations
from pytake_tenants.trials import expire_trials

from .helpers import emitted, new_org


def operator(tokens):
    return tokens.headers(organization_id=uuid.uuid4(), role="super_admin")


async def test_only_super_admin_reaches_operator_routes(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    calls = [
        ("GET", "/v1/organizations", None),
        ("GET", f"/v1/organizations/{org}", None),
        ("PATCH", f"/v1/organizations/{org}", {"name": "X"}),
        ("PUT", f"/v1/organizations/{org}/plan", {"plan": "starter"}),
        ("POST", f"/v1/organizations/{org}/suspend", {"reason": "fraud"}),
        ("POST", f"/v1/organizations/{org}/reactivate", None),
        ("GET", "/v1/audit-log", None),
    ]
    for role in ("org_admin", "agent", "viewer"):
        headers = tokens.headers(organization_id=org, role=role)
        for method, path, body in calls:
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (role, method, path)
            assert r.json()["code"] == "forbidden"
    assert [e["type"] for e in await emitted(app)] == ["pytake.tenants.organization.created.v1"]


async def test_operator_lists_searches_and_pages_organizations(app, settings, client, tokens):
    acme, _ = await new_org(app, settings, "Acme Foods")
    await new_org(app, settings, "Beta Labs")
    gamma, _ = await new_org(app, settings, "Gamma Acme")
    headers = operator(tokens)
    r = await client.get("/v1/organizations", params={"q": "acme"}, headers=headers)
    assert {o["id"] for o in r.json()["items"]} == {str(acme), str(gamma)}
    r = await client.get("/v1/organizations", params={"limit": 2}, headers=headers)
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    r = await client.get(
        "/v1/organizations", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
    )
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None
    await client.post(f"/v1/organizations/{gamma}/suspend", json={"reason": "x"}, headers=headers)
    r = await client.get("/v1/organizations", params={"status": "suspended"}, headers=headers)
    assert [o["id"] for o in r.json()["items"]] == [str(gamma)]
    r = await client.get(f"/v1/organizations/{acme}", headers=headers)
    assert r.status_code == 200
    assert r.json()["usage"]["agents"] == {"limit": 2, "used": 1, "remaining": 1, "period": None}
    r = await client.get(f"/v1/organizations/{uuid.uuid4()}", headers=headers)
    assert r.status_code == 404
    r = await client.get("/v1/organizations", params={"cursor": "garbage"}, headers=headers)
    assert r.status_code == 422


async def test_plan_change_emits_the_new_limits_and_is_audited(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = operator(tokens)
    trial_end = (datetime.now(UTC) + timedelta(days=14)).replace(microsecond=0)
    r = await client.put(
        f"/v1/organizations/{org}/plan",
        json={"plan": "professional", "trial_ends_at": trial_end.isoformat()},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == "professional"
    assert r.json()["usage"]["departments"]["limit"] == 10
    [changed] = [e for e in await emitted(app) if e["type"].endswith("plan_changed.v1")]
    assert changed["subject"] == changed["tenantid"] == str(org)
    assert changed["data"]["plan"] == "professional"
    assert changed["data"]["limits"] == {
        "agents": 20,
        "numbers": 3,
        "contacts": 50_000,
        "departments": 10,
        "monthly_business_messages": 10_000,
        "api_requests_per_minute": 1_200,
        "webhook_endpoints": 10,
        "campaigns": 20,
        "monthly_campaign_recipients": 50_000,
    }
    assert datetime.fromisoformat(changed["data"]["trial_ends_at"]) == trial_end
    assert changed["data"]["changed_by"] is not None
    r = await client.get("/v1/audit-log", params={"organization_id": str(org)}, headers=headers)
    [entry] = r.json()["items"]
    assert entry["action"] == "organization.plan_changed"
    assert entry["before"]["plan"] == "free" and entry["after"]["plan"] == "professional"
    assert entry["actor_id"] == changed["data"]["changed_by"]
    for bad in ({"plan": "platinum"}, {"plan": "free", "trial_ends_at": trial_end.isoformat()}):
        r = await client.put(f"/v1/organizations/{org}/plan", json=bad, headers=headers)
        assert r.status_code == 422
    r = await client.put(
        f"/v1/organizations/{uuid.uuid4()}/plan", json={"plan": "starter"}, headers=headers
    )
    assert r.status_code == 404


async def test_suspension_and_reactivation_emit_events_and_audit(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = operator(tokens)
    r = await client.post(
        f"/v1/organizations/{org}/suspend", json={"reason": "unpaid invoices"}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["status"] == "suspended"
    assert r.json()["suspension_reason"] == "unpaid invoices"
    again = await client.post(
        f"/v1/organizations/{org}/suspend", json={"reason": "again"}, headers=headers
    )
    assert again.json()["suspension_reason"] == "unpaid invoices"  # already suspended: no-op
    r = await client.post(f"/v1/organizations/{org}/reactivate", headers=headers)
    assert r.json()["status"] == "active" and r.json()["suspended_at"] is None
    types = [e["type"] for e in await emitted(app)]
    assert types == [
        "pytake.tenants.organization.created.v1",
        "pytake.tenants.organization.suspended.v1",
        "pytake.tenants.organization.reactivated.v1",
    ]
    suspended = (await emitted(app))[1]
    assert suspended["data"]["reason"] == "unpaid invoices"
    r = await client.get("/v1/audit-log", headers=headers)
    actions = [e["action"] for e in r.json()["items"]]
    assert actions == ["organization.reactivated", "organization.suspended"]
    assert r.json()["items"][1]["reason"] == "unpaid invoices"
    assert r.json()["items"][1]["after"]["status"] == "suspended"


async def test_operator_patch_is_audited_and_slug_stays_unique(app, settings, client, tokens):
    org, _ = await new_org(app, settings, "First")
    await new_org(app, settings, "Second")
    headers = operator(tokens)
    r = await client.patch(
        f"/v1/organizations/{org}",
        json={"slug": "first-co", "settings": {"timezone": "Europe/Lisbon"}},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["slug"] == "first-co"
    r = await client.patch(f"/v1/organizations/{org}", json={"slug": "second"}, headers=headers)
    assert r.status_code == 409
    r = await client.patch(
        f"/v1/organizations/{org}", json={"settings": {"timezone": "Bad/Zone"}}, headers=headers
    )
    assert r.status_code == 422
    r = await client.get(
        "/v1/audit-log", params={"action": "organization.updated"}, headers=headers
    )
    [entry] = r.json()["items"]
    assert entry["before"]["slug"] == "first" and entry["after"]["slug"] == "first-co"
    assert entry["after"]["settings"]["timezone"] == "Europe/Lisbon"


async def test_audit_log_pages(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = operator(tokens)
    for plan in ("starter", "professional", "enterprise"):
        await client.put(f"/v1/organizations/{org}/plan", json={"plan": plan}, headers=headers)
    first = (await client.get("/v1/audit-log", params={"limit": 2}, headers=headers)).json()
    assert [e["after"]["plan"] for e in first["items"]] == ["enterprise", "professional"]
    rest = (
        await client.get(
            "/v1/audit-log", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    assert [e["after"]["plan"] for e in rest["items"]] == ["starter"]
    assert rest["next_cursor"] is None


async def test_ended_trials_fall_back_to_free(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = operator(tokens)
    soon = datetime.now(UTC) + timedelta(hours=1)
    await client.put(
        f"/v1/organizations/{org}/plan",
        json={"plan": "starter", "trial_ends_at": soon.isoformat()},
        headers=headers,
    )
    assert await expire_trials(app.state.db) == []
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(organizations)
            .where(organizations.c.id == org)
            .values(trial_ends_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await expire_trials(app.state.db) == [org]
    assert await expire_trials(app.state.db) == []
    changes = [e for e in await emitted(app) if e["type"].endswith("plan_changed.v1")]
    assert [c["data"]["plan"] for c in changes] == ["starter", "free"]
    assert changes[1]["data"]["changed_by"] is None
    assert changes[1]["data"]["trial_ends_at"] is None
    assert changes[1]["data"]["limits"]["departments"] == 1


async def test_a_cursor_of_one_list_is_refused_by_another(app, settings, client, tokens):
    """Organizations and departments both page by (created_at, id): a cursor names its
    list, so handing one list's cursor to the other is a 422, not a silently wrong page."""
    org, _ = await new_org(app, settings)
    await new_org(app, settings, "Beta Labs")
    page = (
        await client.get("/v1/organizations", params={"limit": 1}, headers=operator(tokens))
    ).json()
    r = await client.get(
        "/v1/departments",
        params={"cursor": page["next_cursor"]},
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_input"
    assert r.json()["errors"][0]["loc"] == ["query", "cursor"]
    r = await client.get(
        "/v1/audit-log", params={"cursor": page["next_cursor"]}, headers=operator(tokens)
    )
    assert r.status_code == 422
