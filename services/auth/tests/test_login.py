import hashlib
import uuid
from datetime import timedelta

import httpx
import jwt
from sqlalchemy import func, select, update

from pytake_auth.app import create_app
from pytake_auth.tables import refresh_tokens, sessions, users


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


async def test_login_opens_a_session_storing_only_the_refresh_tokens_hash(app, api):
    email = api.new_email()
    await api.registered(email=email)
    r = await api.login(email)
    assert r.status_code == 200, r.text
    body = r.json()
    sid = uuid.UUID(jwt.decode(body["access_token"], options={"verify_signature": False})["sid"])
    settings = app.state.settings
    async with app.state.db.transaction(bypass_rls=True) as s:
        session = (await s.execute(select(sessions).where(sessions.c.id == sid))).one()
        tokens = (
            await s.execute(select(refresh_tokens).where(refresh_tokens.c.session_id == sid))
        ).all()
        user = (await s.execute(select(users).where(users.c.email == email))).one()
    assert (session.user_id, session.organization_id) == (user.id, user.organization_id)
    assert session.revoked_at is None
    age = session.expires_at - session.created_at
    assert age == timedelta(seconds=settings.session_max_age_s)
    [token] = tokens
    assert token.token_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    assert body["refresh_token"] not in {str(v) for v in token}
    assert token.expires_at - token.created_at == timedelta(seconds=settings.refresh_token_ttl_s)
    assert (token.user_id, token.organization_id) == (user.id, user.organization_id)
    assert token.used_at is None and token.revoked_at is None and token.rotated_from is None
    assert user.last_login_at == session.created_at  # one transaction, one clock
    assert (await api.refresh(body["refresh_token"])).status_code == 200


async def test_an_account_deactivated_while_its_password_is_checked_is_refused(app, api):
    email = api.new_email()
    await api.registered(email=email)
    passwords = app.state.passwords
    verify = passwords.verify

    async def deactivate_meanwhile(password_hash, password):
        async with app.state.db.transaction(bypass_rls=True) as s:
            await s.execute(update(users).where(users.c.email == email).values(is_active=False))
        return await verify(password_hash, password)

    passwords.verify = deactivate_meanwhile
    try:
        r = await api.login(email)
    finally:
        passwords.verify = verify
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert await s.scalar(select(func.count()).select_from(sessions)) == 1  # register's


async def test_an_unknown_email_costs_one_verification_like_a_known_one(app, api, monkeypatch):
    email = api.new_email()
    await api.registered(email=email)
    checked: list[str] = []
    verify_sync = app.state.passwords.verify_sync

    def counting(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return verify_sync(password_hash, password)

    monkeypatch.setattr(app.state.passwords, "verify_sync", counting)
    assert (await api.login(email)).status_code == 200
    assert (await api.login(api.new_email())).status_code == 401
    assert len(checked) == 2
    # The dummy hash has the parameters in force, so it costs the same to check.
    assert checked[1].split("$")[3] == checked[0].split("$")[3]
