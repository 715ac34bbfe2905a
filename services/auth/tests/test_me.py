import jwt
from sqlalchemy import select

from pytake_auth.tables import users
from pytake_common.mechanics import outbox

NEW_PASSWORD = "a brand new passphrase"


def sid(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sid"]


async def events(app) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()


async def test_patch_me_changes_the_name_and_emits_updated(app, api, client):
    body = await api.registered()
    h = api.bearer(body["access_token"])
    r = await client.patch("/v1/auth/me", json={"full_name": "  Ada King  "}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {**body["user"], "full_name": "Ada King"}
    assert (await client.get("/v1/auth/me", headers=h)).json()["full_name"] == "Ada King"
    updated = [e for e in await events(app) if e["type"] == "pytake.auth.user.updated.v1"]
    assert [e["data"] for e in updated] == [
        {
            "user_id": body["user"]["id"],
            "organization_id": body["user"]["organization_id"],
            "full_name": "Ada King",
            "role": "org_admin",
            "is_active": True,
            "changed": ["full_name"],
        }
    ]
    # Same name again: nothing changes, nothing is emitted.
    assert (
        await client.patch("/v1/auth/me", json={"full_name": "Ada King"}, headers=h)
    ).status_code == 200
    assert len(await events(app)) == 2
    for bad in ({"full_name": " "}, {"email": "x@example.com"}):
        r = await client.patch("/v1/auth/me", json=bad, headers=h)
        assert r.status_code == 422


async def test_password_change_keeps_this_session_and_ends_the_others(app, api, client):
    email = api.new_email()
    current = await api.registered(email=email)
    other = (await api.login(email)).json()
    third = (await api.login(email)).json()
    before = len(await events(app))

    r = await client.post(
        "/v1/auth/me/password",
        json={"current_password": api.password, "new_password": NEW_PASSWORD},
        headers=api.bearer(current["access_token"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    fresh = r.json()
    assert sid(fresh["access_token"]) == sid(current["access_token"])
    assert fresh["refresh_token"] != current["refresh_token"]

    revoked = (await events(app))[before:]
    assert {e["type"] for e in revoked} == {"pytake.auth.session.revoked.v1"}
    assert {e["data"]["session_id"] for e in revoked} == {
        sid(other["access_token"]),
        sid(third["access_token"]),
    }
    assert {e["data"]["reason"] for e in revoked} == {"password_changed"}

    # This session lives on (old access token included); the others are over.
    assert (
        await client.get("/v1/auth/me", headers=api.bearer(current["access_token"]))
    ).status_code == 200
    assert (
        await client.get("/v1/auth/me", headers=api.bearer(other["access_token"]))
    ).status_code == 401
    assert (await api.refresh(other["refresh_token"])).status_code == 401
    assert (await api.refresh(fresh["refresh_token"])).status_code == 200
    # Only the new password signs in.
    assert (await api.login(email)).status_code == 401
    assert (await api.login(email, NEW_PASSWORD)).status_code == 200
    async with app.state.db.transaction(bypass_rls=True) as s:
        stored = await s.scalar(select(users.c.password_hash).where(users.c.email == email))
    assert stored.startswith("$argon2id$")


async def test_the_replaced_refresh_token_of_this_session_counts_as_reuse(api, client):
    body = await api.registered()
    r = await client.post(
        "/v1/auth/me/password",
        json={"current_password": api.password, "new_password": NEW_PASSWORD},
        headers=api.bearer(body["access_token"]),
    )
    fresh = r.json()
    assert (await api.refresh(body["refresh_token"])).status_code == 401
    # Someone held the old token: the whole session ends.
    assert (await api.refresh(fresh["refresh_token"])).status_code == 401


async def test_password_change_checks_the_current_password_and_the_policy(app, api, client):
    email = api.new_email()
    body = await api.registered(email=email)
    h = api.bearer(body["access_token"])
    before = len(await events(app))
    wrong = await client.post(
        "/v1/auth/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=h,
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_current_password"
    for weak in ("short", email.upper()):
        r = await client.post(
            "/v1/auth/me/password",
            json={"current_password": api.password, "new_password": weak},
            headers=h,
        )
        assert r.status_code == 422 and r.json()["code"] == "weak_password"
    assert len(await events(app)) == before
    assert (await api.login(email)).status_code == 200
    assert (await client.post("/v1/auth/me/password", json={})).status_code == 401
    # Guessing the current password with a stolen token is throttled like logins
    # (the successful sign-in above forgot the first failure).
    for _ in range(5):
        await client.post(
            "/v1/auth/me/password",
            json={"current_password": "guess", "new_password": NEW_PASSWORD},
            headers=h,
        )
    r = await client.post(
        "/v1/auth/me/password",
        json={"current_password": api.password, "new_password": NEW_PASSWORD},
        headers=h,
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
