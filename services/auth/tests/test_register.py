import asyncio
import uuid

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from pytake_auth.tables import refresh_tokens, sessions, users
from pytake_common.mechanics import idempotency_keys, outbox
from pytake_common.security import JWKSVerifier, Role

CLAIMS = {"iss", "aud", "sub", "org", "role", "sid", "jti", "iat", "nbf", "exp"}


async def counts(app) -> dict[str, int]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return {
            t.name: await s.scalar(select(func.count()).select_from(t))
            for t in (users, sessions, refresh_tokens, outbox)
        }


async def test_register_returns_tokens_that_verify_through_the_real_jwks(app, client, api):
    r = await api.register(email="  Ada.Lovelace@Example.COM ")
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    user = body["user"]
    assert set(user) == {"id", "email", "full_name", "role", "organization_id"}
    assert user["email"] == "ada.lovelace@example.com"
    assert user["role"] == "org_admin"
    assert user["full_name"] == "Ada Lovelace"

    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["cache-control"] == "public, max-age=300"
    [key] = jwks.json()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA" and key["use"] == "sig" and key["kid"]
    assert "d" not in key  # never the private half

    # The verifier every other service uses, fetching the JWKS over HTTP from the app.
    verifier = JWKSVerifier(
        "http://auth/.well-known/jwks.json", issuer="pytake-auth", audience="pytake", client=client
    )
    claims = await verifier.verify(body["access_token"])
    assert set(claims) == CLAIMS
    assert claims["sub"] == user["id"] and claims["org"] == user["organization_id"]
    assert claims["role"] == "org_admin"
    assert claims["exp"] - claims["nbf"] == 900 and claims["nbf"] == int(claims["iat"])
    uuid.UUID(claims["sid"]), uuid.UUID(claims["jti"])
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] == key["kid"]
    principal = await verifier.principal(body["access_token"])
    assert principal.role is Role.ORG_ADMIN
    assert str(principal.organization_id) == user["organization_id"]

    me = await client.get("/v1/auth/me", headers=api.bearer(body["access_token"]))
    assert me.status_code == 200 and me.json() == user


async def test_registration_event_is_in_the_outbox_with_the_exact_data(app, api):
    body = await api.registered(full_name="Grace Hopper", organization_name="COBOL Inc.")
    user = body["user"]
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.topic, outbox.c.key, outbox.c.event))).all()
    [row] = rows
    assert row.topic == "pytake.auth.user"
    assert row.key == user["id"]
    event = row.event
    assert event["type"] == "pytake.auth.user.registered.v1"
    assert event["source"] == "pytake/auth"
    assert event["subject"] == user["id"]
    assert event["tenantid"] == user["organization_id"]
    assert event["data"] == {
        "user_id": user["id"],
        "organization_id": user["organization_id"],
        "email": user["email"],
        "full_name": "Grace Hopper",
        "role": "org_admin",
        "organization_name": "COBOL Inc.",
    }


async def test_duplicate_email_is_a_conflict_and_stores_nothing(app, api):
    email = api.new_email()
    await api.registered(email=email)
    before = await counts(app)
    r = await api.register(email=email.upper(), organization_name="Another")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "email_taken"
    assert await counts(app) == before


async def test_concurrent_registrations_of_one_email_create_one_user(app, api):
    email = api.new_email()
    results = await asyncio.gather(*(api.register(email=email) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert (await counts(app))["users"] == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 10"),
        ("x" * 129, "at most 128"),
        (" " * 12, "whitespace"),
        ("SAME@EXAMPLE.COM", "email"),
    ],
)
async def test_weak_password_is_refused_and_nothing_is_stored(app, api, password, message):
    r = await api.register(email="same@example.com", password=password)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "weak_password"
    assert message in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "password"]
    assert await counts(app) == {"users": 0, "sessions": 0, "refresh_tokens": 0, "outbox": 0}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"full_name": "   "},
        {"organization_name": "x" * 201},
        {"unexpected": "field"},
    ],
)
async def test_malformed_registration_is_a_validation_problem(app, api, body):
    r = await api.register(**body)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"
    assert (await counts(app))["users"] == 0


async def test_idempotency_key_replays_the_first_answer_and_creates_one_user(app, api):
    email, key = api.new_email(), {"Idempotency-Key": uuid.uuid4().hex}
    first = await api.register(email=email, headers=key)
    second = await api.register(email=email, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["cache-control"] == "no-store"
    assert await counts(app) == {"users": 1, "sessions": 1, "refresh_tokens": 1, "outbox": 1}

    # The same key with another body is refused, not replayed.
    r = await api.register(email=email, password="another long password", headers=key)
    assert r.status_code == 422 and "different request" in r.json()["detail"]
    # A stranger using the same key is a different scope: their registration proceeds.
    r = await api.register(headers=key)
    assert r.status_code == 201 and r.json()["user"]["email"] != email
    # Without the key, a retry is a plain duplicate.
    r = await api.register(email=email)
    assert r.status_code == 409


async def test_secrets_are_not_stored_in_clear(app, api):
    email = api.new_email()
    body = await api.registered(email=email, headers={"Idempotency-Key": "k-1"})
    async with app.state.db.transaction(bypass_rls=True) as s:
        stored_hash = await s.scalar(select(users.c.password_hash))
        token_hashes = (await s.execute(select(refresh_tokens.c.token_hash))).scalars().all()
        idem = (
            await s.execute(select(idempotency_keys.c.fingerprint, idempotency_keys.c.response))
        ).one()
    assert stored_hash.startswith("$argon2id$")
    assert body["refresh_token"] not in token_hashes and len(token_hashes[0]) == 64
    # The replayable answer holds live tokens and the fingerprint covers the password:
    # neither may be readable from the table.
    assert body["refresh_token"] not in str(idem.response)
    assert body["access_token"] not in str(idem.response)
    assert len(idem.fingerprint) == 64


async def test_register_works_through_a_real_http_client_without_lifespan(app):
    # The signing key is created lazily by the first request that needs one.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://auth"
    ) as c:
        r = await c.get("/.well-known/jwks.json")
    assert r.status_code == 200 and len(r.json()["keys"]) == 1
