import httpx
from sqlalchemy import select, update

from pytake_auth.app import create_app
from pytake_auth.tables import users


async def test_login_returns_tokens_case_insensitively(api, client):
    email = api.new_email()
    registered = await api.registered(email=email)
    r = await api.login(f"  {email.upper()}  ")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["user"] == registered["user"]
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_token"] != registered["refresh_token"]
    me = await client.get("/v1/auth/me", headers=api.bearer(body["access_token"]))
    assert me.status_code == 200


async def test_wrong_password_unknown_email_and_inactive_user_look_identical(app, api):
    email = api.new_email()
    await api.registered(email=email)
    wrong_password = await api.login(email, "not the right password")
    unknown_email = await api.login(api.new_email())
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(update(users).where(users.c.email == email).values(is_active=False))
    inactive = await api.login(email)
    for r in (wrong_password, unknown_email, inactive):
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"] == "Bearer"
    assert wrong_password.json() == unknown_email.json() == inactive.json()
    assert wrong_password.json()["code"] == "invalid_credentials"


async def test_login_rehashes_when_the_parameters_changed(app, api, make_settings):
    email = api.new_email()
    await api.registered(email=email)
    async with app.state.db.transaction(bypass_rls=True) as s:
        old = await s.scalar(select(users.c.password_hash).where(users.c.email == email))
    assert "m=1024,t=1,p=1" in old

    stronger = create_app(make_settings(argon2_time_cost=2, argon2_memory_cost_kib=2048))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stronger), base_url="http://auth"
        ) as c:
            r = await c.post("/v1/auth/login", json={"email": email, "password": api.password})
            assert r.status_code == 200
            async with app.state.db.transaction(bypass_rls=True) as s:
                new = await s.scalar(select(users.c.password_hash).where(users.c.email == email))
            assert new != old and "m=2048,t=2,p=1" in new
            r = await c.post("/v1/auth/login", json={"email": email, "password": api.password})
            assert r.status_code == 200
    finally:
        await stronger.state.db.dispose()
    # The old parameters still verify the new hash (parameters live in the hash).
    assert (await api.login(email)).status_code == 200


async def test_login_validation(api):
    r = await api.client.post("/v1/auth/login", json={"email": "", "password": "x"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
