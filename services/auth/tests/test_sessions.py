import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import func, select, update

from pytake_auth.janitor import SessionJanitor
from pytake_auth.tables import refresh_tokens, sessions
from pytake_common.mechanics import outbox


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def revoked_events(app) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in events if e["type"] == "pytake.auth.session.revoked.v1"]


async def test_refresh_rotates_within_the_same_session(app, api, client):
    first = await api.registered()
    r = await api.refresh(first["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["user"] == first["user"]
    assert claims(second["access_token"])["sid"] == claims(first["access_token"])["sid"]
    me = await client.get("/v1/auth/me", headers=api.bearer(second["access_token"]))
    assert me.status_code == 200

    third = await api.refresh(second["refresh_token"])
    assert third.status_code == 200
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = await s.execute(
            select(refresh_tokens).order_by(refresh_tokens.c.created_at, refresh_tokens.c.used_at)
        )
        rows = rows.mappings().all()
    assert len(rows) == 3
    assert len({r["session_id"] for r in rows}) == 1
    spent = [r for r in rows if r["used_at"] is not None]
    live = [r for r in rows if r["used_at"] is None]
    assert len(spent) == 2 and len(live) == 1
    chain = {r["id"]: r["rotated_from"] for r in rows}
    assert chain[live[0]["id"]] in {r["id"] for r in spent}
    assert await revoked_events(app) == []


async def test_reusing_a_spent_refresh_token_revokes_the_whole_session(app, api, client):
    first = await api.registered()
    second = (await api.refresh(first["refresh_token"])).json()

    reuse = await api.refresh(first["refresh_token"])
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "invalid_refresh_token"
    # The legitimate-looking newest token is dead too: the session is gone.
    after = await api.refresh(second["refresh_token"])
    assert after.status_code == 401
    assert after.json() == reuse.json()
    unknown = await api.refresh("never-issued")
    assert unknown.json() == reuse.json()

    sid = claims(first["access_token"])["sid"]
    async with app.state.db.transaction(bypass_rls=True) as s:
        session = (await s.execute(select(sessions))).mappings().one()
        live = await s.scalar(
            select(func.count())
            .select_from(refresh_tokens)
            .where(refresh_tokens.c.revoked_at.is_(None))
        )
    assert str(session["id"]) == sid
    assert session["revoked_at"] is not None
    assert session["revoked_reason"] == "refresh_token_reuse"
    assert live == 0

    [event] = await revoked_events(app)
    user = first["user"]
    assert event["data"] == {
        "session_id": sid,
        "user_id": user["id"],
        "organization_id": user["organization_id"],
        "reason": "refresh_token_reuse",
    }
    assert event["subject"] == sid and event["tenantid"] == user["organization_id"]
    me = await client.get("/v1/auth/me", headers=api.bearer(second["access_token"]))
    assert me.status_code == 401 and me.json()["code"] == "session_revoked"


async def test_concurrent_use_of_one_refresh_token_lets_at_most_one_through(app, api):
    first = await api.registered()
    results = await asyncio.gather(*(api.refresh(first["refresh_token"]) for _ in range(3)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 401, 401]
    # The losers presented a spent token: that is reuse, and the session ends.
    assert len(await revoked_events(app)) == 1


async def test_other_sessions_survive_a_reuse(app, api):
    email = api.new_email()
    first = await api.registered(email=email)
    other = (await api.login(email)).json()
    await api.refresh(first["refresh_token"])
    await api.refresh(first["refresh_token"])  # reuse: first session revoked
    assert (await api.refresh(other["refresh_token"])).status_code == 200


async def test_expired_refresh_token_is_refused_without_revoking(app, api):
    first = await api.registered()
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(refresh_tokens).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await api.refresh(first["refresh_token"])
    assert r.status_code == 401 and r.json()["code"] == "invalid_refresh_token"
    assert await revoked_events(app) == []


async def test_logout_revokes_the_session_once(app, api, client):
    body = await api.registered()
    headers = api.bearer(body["access_token"])
    r = await client.post("/v1/auth/logout", headers=headers)
    assert r.status_code == 204 and r.content == b""
    [event] = await revoked_events(app)
    user = body["user"]
    assert event["data"] == {
        "session_id": claims(body["access_token"])["sid"],
        "user_id": user["id"],
        "organization_id": user["organization_id"],
        "reason": "logout",
    }
    assert (await api.refresh(body["refresh_token"])).status_code == 401
    me = await client.get("/v1/auth/me", headers=headers)
    assert me.status_code == 401 and me.json()["code"] == "session_revoked"
    # Idempotent: a second logout answers the same and emits nothing more.
    assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204
    assert len(await revoked_events(app)) == 1
    # Refresh tokens of the logged-out session never count as reuse.
    assert (await api.refresh(body["refresh_token"])).status_code == 401
    assert len(await revoked_events(app)) == 1


async def test_logout_and_me_need_a_valid_bearer_token(client, api):
    for method, path in (("POST", "/v1/auth/logout"), ("GET", "/v1/auth/me")):
        r = await client.request(method, path)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        r = await client.request(method, path, headers=api.bearer("not.a.jwt"))
        assert r.status_code == 401
    forged = jwt.encode(
        {"sub": str(uuid.uuid4())}, "k" * 32, algorithm="HS256", headers={"kid": "x"}
    )
    r = await client.get("/v1/auth/me", headers=api.bearer(forged))
    assert r.status_code == 401


async def test_janitor_purges_long_ended_sessions_only(app, api, make_settings):
    ended = await api.registered()
    alive = await api.registered()
    await api.client.post("/v1/auth/logout", headers=api.bearer(ended["access_token"]))
    janitor = SessionJanitor(make_settings(), app.state.db)
    assert await janitor.purge() == 0  # revoked just now: kept for reuse detection
    assert await janitor.purge(now=datetime.now(UTC) + timedelta(days=8)) == 1
    async with app.state.db.transaction(bypass_rls=True) as s:
        owners = (await s.execute(select(refresh_tokens.c.user_id))).scalars().all()
    assert [str(o) for o in owners] == [alive["user"]["id"]]


async def test_a_token_issued_just_after_a_cutoff_in_the_same_second_is_not_revoked(app):
    """``iat`` carries milliseconds: a whole second would refuse, for up to a second, the
    token a user gets right after changing the password (cut off in that same second)."""
    from pytake_auth.tokens import mint_access_token
    from pytake_common.events import CloudEvent
    from pytake_common.revocation import RevocationList

    key = await app.state.keys.signing_key()
    user, org = uuid.uuid4(), uuid.uuid4()
    cutoff = 1_900_000_000.5

    def claims_at(now: float) -> dict[str, object]:
        token = mint_access_token(
            key,
            app.state.settings,
            user_id=user,
            organization_id=org,
            role="agent",
            session_id=uuid.uuid4(),
            now=now,
        )
        return jwt.decode(token, options={"verify_signature": False})

    revocations = RevocationList(app.state.settings)
    revocations.apply(
        CloudEvent(
            type="pytake.auth.user.sessions_revoked.v1",
            source="pytake/auth",
            subject=str(user),
            tenantid=str(org),
            data={
                "user_id": str(user),
                "revoked_before": datetime.fromtimestamp(cutoff, UTC).isoformat(),
            },
        )
    )
    assert revocations.is_revoked(claims_at(cutoff - 0.2))
    assert not revocations.is_revoked(claims_at(cutoff + 0.2))
