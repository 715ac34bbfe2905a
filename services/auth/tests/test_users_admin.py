import uuid
from datetime import datetime

from sqlalchemy import select

from pytake_auth.tables import users
from pytake_common.events import CloudEvent
from pytake_common.mechanics import outbox


async def events(app, type_suffix: str | None = None) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in rows if type_suffix is None or e["type"].endswith(type_suffix)]


def types_after(all_events: list[dict], count_before: int) -> list[str]:
    return [e["type"].removeprefix("pytake.auth.") for e in all_events[count_before:]]


async def test_admin_creates_users_idempotently_and_the_event_carries_them(app, api, client):
    admin = await api.registered()
    token, org = admin["access_token"], admin["user"]["organization_id"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {
        "email": "  New.Agent@Example.com",
        "full_name": "New Agent",
        "role": "agent",
        "password": api.password,
    }
    first = await client.post("/v1/users", json=body, headers={**api.bearer(token), **key})
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["email"] == "new.agent@example.com"
    assert created["organization_id"] == org and created["role"] == "agent"
    assert created["is_active"] is True and created["last_login_at"] is None
    again = await client.post("/v1/users", json=body, headers={**api.bearer(token), **key})
    assert again.status_code == 201 and again.json() == created
    other = await client.post(
        "/v1/users", json={**body, "role": "viewer"}, headers={**api.bearer(token), **key}
    )
    assert other.status_code == 422  # same key, different request
    dup = await client.post("/v1/users", json=body, headers=api.bearer(token))
    assert dup.status_code == 409 and dup.json()["code"] == "email_taken"

    [event] = await events(app, "user.created.v1")
    assert event["subject"] == created["id"] and event["tenantid"] == org
    assert event["data"] == {
        "user_id": created["id"],
        "organization_id": org,
        "email": "new.agent@example.com",
        "full_name": "New Agent",
        "role": "agent",
        "is_active": True,
    }
    # The new user signs in with the password the admin set.
    login = await api.login("new.agent@example.com")
    assert login.status_code == 200 and login.json()["user"]["role"] == "agent"
    weak = await api.create_user(token, password="short")
    assert weak.status_code == 422 and weak.json()["code"] == "weak_password"


async def test_list_filters_searches_and_pages_with_a_cursor(api, client):
    admin = await api.registered(full_name="Ada Admin")
    token = admin["access_token"]
    for role, name in (("agent", "Alan 100%_Turing"), ("viewer", "Vera"), ("agent", "Bob")):
        r = await api.create_user(token, role=role, full_name=name)
        assert r.status_code == 201
    foreign = await api.registered()  # another organization: never listed
    await api.create_user(foreign["access_token"], full_name="Alan Elsewhere")

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/users", params=params, headers=api.bearer(token))
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"} and len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [u["full_name"] for u in seen] == ["Ada Admin", "Alan 100%_Turing", "Vera", "Bob"]

    async def names(**params) -> list[str]:
        r = await client.get("/v1/users", params=params, headers=api.bearer(token))
        assert r.status_code == 200, r.text
        return [u["full_name"] for u in r.json()["items"]]

    assert await names(role="agent") == ["Alan 100%_Turing", "Bob"]
    assert await names(q="alan") == ["Alan 100%_Turing"]
    assert await names(q="100%_") == ["Alan 100%_Turing"]  # wildcards are literal
    assert await names(q="%") == ["Alan 100%_Turing"]
    assert await names(q=admin["user"]["email"][:10].upper()) == ["Ada Admin"]
    bob = next(u for u in seen if u["full_name"] == "Bob")
    await client.post(f"/v1/users/{bob['id']}/deactivate", headers=api.bearer(token))
    assert await names(is_active="false") == ["Bob"]
    assert "Bob" not in await names(is_active="true")
    bad = await client.get("/v1/users", params={"cursor": "%%%"}, headers=api.bearer(token))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


async def test_only_admins_of_the_same_organization_manage_users(api, client):
    admin = await api.registered()
    token = admin["access_token"]
    agent = await api.member(token, role="agent")
    viewer = await api.member(token, role="viewer")
    target = agent["user"]["id"]
    for who in (agent, viewer):
        h = api.bearer(who["access_token"])
        assert (await client.get("/v1/users", headers=h)).status_code == 403
        assert (await client.get(f"/v1/users/{target}", headers=h)).status_code == 403
        assert (await api.create_user(who["access_token"])).status_code == 403
        r = await client.patch(f"/v1/users/{target}", json={"role": "org_admin"}, headers=h)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # Only a super_admin hands out super_admin.
    r = await api.create_user(token, role="super_admin")
    assert r.status_code == 403 and r.json()["code"] == "role_not_allowed"
    r = await client.patch(
        f"/v1/users/{target}", json={"role": "super_admin"}, headers=api.bearer(token)
    )
    assert r.status_code == 403 and r.json()["code"] == "role_not_allowed"

    stranger = await api.registered()
    h = api.bearer(stranger["access_token"])
    for method, path, body in (
        ("GET", f"/v1/users/{target}", None),
        ("PATCH", f"/v1/users/{target}", {"full_name": "Hijacked"}),
        ("DELETE", f"/v1/users/{target}", None),
        ("POST", f"/v1/users/{target}/activate", None),
        ("POST", f"/v1/users/{target}/deactivate", None),
        ("GET", f"/v1/users/{uuid.uuid4()}", None),
    ):
        r = await client.request(method, path, json=body, headers=h)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "not_found"
    r = await client.get(f"/v1/users/{target}", headers=api.bearer(token))
    assert r.status_code == 200 and r.json()["full_name"] == "Grace Hopper"


async def test_role_change_ends_the_users_sessions(app, api, client):
    admin = await api.registered()
    token, org = admin["access_token"], admin["user"]["organization_id"]
    agent = await api.member(token)
    uid = agent["user"]["id"]
    before = len(await events(app))

    r = await client.patch(
        f"/v1/users/{uid}", json={"full_name": "Renamed"}, headers=api.bearer(token)
    )
    assert r.status_code == 200 and r.json()["full_name"] == "Renamed"
    assert (await api.refresh(agent["refresh_token"])).status_code == 200  # a rename ends nothing

    r = await client.patch(
        f"/v1/users/{uid}",
        json={"role": "org_admin", "full_name": "Renamed"},
        headers=api.bearer(token),
    )
    assert r.status_code == 200 and r.json()["role"] == "org_admin"
    all_events = await events(app)
    assert types_after(all_events, before) == [
        "user.updated.v1",
        "user.updated.v1",
        "user.sessions_revoked.v1",
    ]
    renamed, promoted, revoked = all_events[before:]
    assert renamed["data"]["changed"] == ["full_name"]
    assert promoted["data"] == {
        "user_id": uid,
        "organization_id": org,
        "full_name": "Renamed",
        "role": "org_admin",
        "is_active": True,
        "changed": ["role"],
    }
    assert revoked["subject"] == uid and revoked["tenantid"] == org
    assert set(revoked["data"]) == {"user_id", "organization_id", "reason", "revoked_before"}
    assert revoked["data"]["reason"] == "role_changed"
    datetime.fromisoformat(revoked["data"]["revoked_before"])
    # Every refresh token of the user is dead: the old role cannot be renewed.
    assert (await api.refresh(agent["refresh_token"])).status_code == 401
    me = await client.get("/v1/auth/me", headers=api.bearer(agent["access_token"]))
    assert me.status_code == 401 and me.json()["code"] == "session_revoked"
    # No change, no event.
    again = await client.patch(
        f"/v1/users/{uid}", json={"role": "org_admin"}, headers=api.bearer(token)
    )
    assert again.status_code == 200 and len(await events(app)) == len(all_events)


async def test_deactivate_and_activate(app, api, client):
    admin = await api.registered()
    token = admin["access_token"]
    agent = await api.member(token)
    uid, email = agent["user"]["id"], agent["user"]["email"]
    before = len(await events(app))

    r = await client.post(f"/v1/users/{uid}/deactivate", headers=api.bearer(token))
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert types_after(await events(app), before) == [
        "user.deactivated.v1",
        "user.sessions_revoked.v1",
    ]
    [revoked] = await events(app, "sessions_revoked.v1")
    assert revoked["data"]["reason"] == "deactivated"
    assert (await api.login(email)).status_code == 401
    assert (await api.refresh(agent["refresh_token"])).status_code == 401
    # Idempotent: nothing more happens.
    r = await client.post(f"/v1/users/{uid}/deactivate", headers=api.bearer(token))
    assert r.status_code == 200 and len(await events(app)) == before + 2

    r = await client.post(f"/v1/users/{uid}/activate", headers=api.bearer(token))
    assert r.status_code == 200 and r.json()["is_active"] is True
    [activated] = await events(app, "user.activated.v1")
    assert activated["data"] == {
        "user_id": uid,
        "organization_id": admin["user"]["organization_id"],
    }
    assert (await api.login(email)).status_code == 200
    r = await client.post(f"/v1/users/{uid}/activate", headers=api.bearer(token))
    assert r.status_code == 200 and len(await events(app, "user.activated.v1")) == 1


async def test_delete_anonymises_and_frees_the_email(app, api, client):
    admin = await api.registered()
    token = admin["access_token"]
    agent = await api.member(token)
    uid, email = agent["user"]["id"], agent["user"]["email"]
    before = len(await events(app))

    r = await client.delete(f"/v1/users/{uid}", headers=api.bearer(token))
    assert r.status_code == 204 and r.content == b""
    assert types_after(await events(app), before) == ["user.deleted.v1", "user.sessions_revoked.v1"]
    [revoked] = await events(app, "sessions_revoked.v1")
    assert revoked["data"]["reason"] == "deleted"
    async with app.state.db.transaction(bypass_rls=True) as s:
        row = (await s.execute(select(users).where(users.c.id == uuid.UUID(uid)))).mappings().one()
    assert row["email"] == f"deleted+{uid}@invalid"
    assert row["is_active"] is False and row["deleted_at"] is not None
    assert not row["password_hash"].startswith("$argon2")

    assert (await client.get(f"/v1/users/{uid}", headers=api.bearer(token))).status_code == 404
    assert (await client.delete(f"/v1/users/{uid}", headers=api.bearer(token))).status_code == 404
    listed = await client.get("/v1/users", headers=api.bearer(token))
    assert uid not in {u["id"] for u in listed.json()["items"]}
    assert (await api.login(email)).status_code == 401
    assert (await api.refresh(agent["refresh_token"])).status_code == 401
    # The address can belong to a new account.
    assert (await api.create_user(token, email=email)).status_code == 201


async def test_the_last_active_admin_cannot_remove_themselves(api, client):
    admin = await api.registered()
    token, me = admin["access_token"], admin["user"]["id"]
    h = api.bearer(token)
    for method, path, body in (
        ("POST", f"/v1/users/{me}/deactivate", None),
        ("DELETE", f"/v1/users/{me}", None),
        ("PATCH", f"/v1/users/{me}", {"role": "agent"}),
    ):
        r = await client.request(method, path, json=body, headers=h)
        assert r.status_code == 409, (method, r.text)
        assert r.json()["code"] == "last_admin"
    # With a second active admin, stepping down is fine.
    await api.member(token, role="org_admin")
    r = await client.patch(f"/v1/users/{me}", json={"role": "agent"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "agent"


async def test_the_plan_limits_active_users(app, api, client):
    admin = await api.registered()
    token, org = admin["access_token"], admin["user"]["organization_id"]
    agent = await api.member(token)
    directory = app.state.organizations
    plan = CloudEvent(
        source="pytake/tenants",
        type="pytake.tenants.organization.plan_changed.v1",
        subject=org,
        tenantid=org,
        data={
            "organization_id": org,
            "plan": "starter",
            "limits": {"agents": 2},
            "trial_ends_at": None,
            "changed_by": admin["user"]["id"],
        },
    )
    directory.handlers()[plan.type](plan)

    r = await api.create_user(token)
    assert r.status_code == 402
    problem = r.json()
    assert problem["code"] == "plan_limit_exceeded"
    assert (problem["limit"], problem["allowed"], problem["used"]) == ("agents", 2, 2)
    # A deactivated user frees a seat; taking it back needs one free.
    uid = agent["user"]["id"]
    await client.post(f"/v1/users/{uid}/deactivate", headers=api.bearer(token))
    assert (await api.create_user(token)).status_code == 201
    r = await client.post(f"/v1/users/{uid}/activate", headers=api.bearer(token))
    assert r.status_code == 402 and r.json()["code"] == "plan_limit_exceeded"
