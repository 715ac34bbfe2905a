import asyncio
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import func, select, update

from pytake_auth.keys import SECRET_PURPOSE, KeyRing
from pytake_auth.tables import signing_keys
from pytake_common.crypto import SecretBox
from pytake_common.security import JWKSVerifier


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def test_replicas_starting_together_create_one_key(app, make_settings):
    settings = make_settings()
    rings = [KeyRing(settings, app.state.db) for _ in range(4)]
    await asyncio.gather(*(r.refresh() for r in rings))
    kids = {(await r.signing_key()).kid for r in rings}
    async with app.state.db.transaction() as s:
        assert await s.scalar(select(func.count()).select_from(signing_keys)) == 1
    assert len(kids) == 1


async def test_private_keys_are_encrypted_at_rest(app, make_settings):
    await app.state.keys.refresh()
    async with app.state.db.transaction() as s:
        row = (await s.execute(select(signing_keys))).mappings().one()
    assert "PRIVATE KEY" not in row["private_key_encrypted"]
    box = SecretBox(make_settings().secret, purpose=SECRET_PURPOSE)
    assert box.decrypt(row["private_key_encrypted"]).startswith("-----BEGIN PRIVATE KEY-----")
    assert set(row["public_jwk"]) == {"kty", "crv", "x", "kid", "alg", "use"}


async def test_rotation_publishes_first_signs_later_and_keeps_old_tokens_valid(app, api, client):
    keys = app.state.keys
    old = await api.registered()
    old_kid = kid_of(old["access_token"])

    new_kid = await keys.rotate_now()
    assert new_kid != old_kid
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert published == {old_kid, new_kid}
    # Not signing yet: caches must have had the chance to fetch it.
    assert kid_of((await api.registered())["access_token"]) == old_kid

    # Time passes: the successor's turn comes.
    shift = timedelta(seconds=app.state.settings.key_publish_lead_s + 1)
    async with app.state.db.transaction() as s:
        await s.execute(
            update(signing_keys).values(
                not_before=signing_keys.c.not_before - shift,
                retired_at=signing_keys.c.retired_at - shift,
            )
        )
    await keys.refresh()
    fresh = await api.registered()
    assert kid_of(fresh["access_token"]) == new_kid

    verifier = JWKSVerifier(
        "http://auth/.well-known/jwks.json", issuer="pytake-auth", audience="pytake", client=client
    )
    assert (await verifier.verify(old["access_token"]))["sub"] == old["user"]["id"]
    assert (await verifier.verify(fresh["access_token"]))["sub"] == fresh["user"]["id"]
    # auth itself still accepts the old key's tokens.
    me = await client.get("/v1/auth/me", headers=api.bearer(old["access_token"]))
    assert me.status_code == 200

    # Long after retirement the old key is withdrawn from the JWKS.
    async with app.state.db.transaction() as s:
        await s.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == old_kid)
            .values(retired_at=datetime.now(UTC) - timedelta(days=1))
        )
    await keys.refresh()
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert published == {new_kid}
    me = await client.get("/v1/auth/me", headers=api.bearer(old["access_token"]))
    assert me.status_code == 401


async def test_an_old_signing_key_is_rotated_automatically(app, make_settings):
    ring = KeyRing(make_settings(signing_key_rotation_s=3600), app.state.db)
    first = (await ring.signing_key()).kid
    async with app.state.db.transaction() as s:
        await s.execute(
            update(signing_keys).values(not_before=datetime.now(UTC) - timedelta(hours=2))
        )
    await ring.refresh()
    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                select(signing_keys.c.kid, signing_keys.c.not_before, signing_keys.c.retired_at)
            )
        ).all()
    assert len(rows) == 2
    successor = next(r for r in rows if r.kid != first)
    assert successor.not_before > datetime.now(UTC)  # published ahead of signing
    assert next(r for r in rows if r.kid == first).retired_at == successor.not_before
    assert (await ring.signing_key()).kid == first
    await ring.refresh()
    async with app.state.db.transaction() as s:  # not rotated again while one is pending
        assert await s.scalar(select(func.count()).select_from(signing_keys)) == 2


async def test_start_up_creates_the_signing_key(app):
    async with app.router.lifespan_context(app):
        async with app.state.db.transaction() as s:
            assert await s.scalar(select(func.count()).select_from(signing_keys)) == 1
