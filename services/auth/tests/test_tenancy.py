import jwt
from sqlalchemy import select

from pytake_auth.tables import sessions, users
from pytake_auth.tokens import mint_access_token


async def test_a_token_of_one_organization_cannot_read_another_organizations_user(app, api, client):
    a = await api.registered()
    b = await api.registered()
    a_claims = jwt.decode(a["access_token"], options={"verify_signature": False})
    key = await app.state.keys.signing_key()
    # A correctly signed token for organization A naming B's user.
    crossed = mint_access_token(
        key,
        app.state.settings,
        user_id=b["user"]["id"],
        organization_id=a["user"]["organization_id"],
        role="org_admin",
        session_id=a_claims["sid"],
    )
    r = await client.get("/v1/auth/me", headers=api.bearer(crossed))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert b["user"]["email"] not in r.text


async def test_row_level_security_binds_every_transaction_to_its_organization(app, api):
    a = await api.registered()
    b = await api.registered()
    db = app.state.db
    async with db.transaction(organization_id=a["user"]["organization_id"]) as s:
        seen = (await s.execute(select(users.c.email))).scalars().all()
        seen_sessions = (await s.execute(select(sessions.c.user_id))).scalars().all()
    assert seen == [a["user"]["email"]]
    assert [str(u) for u in seen_sessions] == [a["user"]["id"]]
    async with db.transaction() as s:  # no organization bound: nothing is visible
        assert (await s.execute(select(users.c.id))).all() == []
    async with db.transaction(bypass_rls=True) as s:
        assert len((await s.execute(select(users.c.id))).all()) == 2
    assert b  # both exist
