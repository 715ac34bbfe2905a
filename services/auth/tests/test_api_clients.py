"""API clients: administration, the client-credentials grant, scopes, revocation, audit."""

import base64
import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import jwt
from sqlalchemy import select, text, update

from pytake_auth.tables import api_clients, audit_log
from pytake_common.mechanics import outbox

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode(), **FORM}


async def new_client(client, api, admin_token: str, **body) -> dict:
    r = await client.post(
        "/v1/api-clients",
        json={"name": "CRM sync", "role": "agent", **body},
        headers=api.bearer(admin_token),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def token_by_form(client, api, client_id: str, secret: str, **extra) -> object:
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return await client.post(
        "/v1/auth/token", data={**data, **extra}, headers={**FORM, **api.origin()}
    )


async def audit_actions(app, client_id: str) -> list[tuple[str, dict | None]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = await s.execute(
            select(audit_log.c.action, audit_log.c.detail)
            .where(audit_log.c.target_id == uuid.UUID(client_id))
            .order_by(audit_log.c.id)
        )
    return [(r.action, r.detail) for r in rows]


async def revoked_sessions(app, client_id: str) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [
        e["data"]
        for e in rows
        if e["type"] == "pytake.auth.session.revoked.v1" and e["data"]["user_id"] == client_id
    ]


async def test_admin_creates_a_client_and_its_secret_is_shown_once(app, api, client, caplog):
    caplog.set_level(logging.DEBUG)
    admin = await api.registered()
    token = admin["access_token"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "CRM sync", "role": "agent", "scopes": ["contacts:read", "contacts:write"]}
    r = await client.post("/v1/api-clients", json=body, headers={**api.bearer(token), **key})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    secret = created["client_secret"]
    assert secret.startswith("pytake_cs_") and len(secret) > 40
    assert created["client_id"] == created["id"]
    assert created["scopes"] == ["contacts:read", "contacts:write"]
    assert created["created_by"] == admin["user"]["id"] and created["last_used_at"] is None
    # A retry with the same key replays the answer (stored encrypted), creating nothing.
    again = await client.post("/v1/api-clients", json=body, headers={**api.bearer(token), **key})
    assert again.status_code == 201 and again.json() == created

    listed = await client.get("/v1/api-clients", headers=api.bearer(token))
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [created["id"]]
    assert secret not in listed.text and "client_secret" not in listed.json()["items"][0]
    # Stored as its sha256 only.
    async with app.state.db.transaction(bypass_rls=True) as s:
        stored = (await s.execute(select(api_clients))).mappings().one()
    assert secret not in str(dict(stored)) and len(stored["secret_hash"]) == 64

    issued = await token_by_form(client, api, created["client_id"], secret)
    assert issued.status_code == 200, issued.text
    # Neither the create, nor the replay, nor the token request logged the secret.
    assert secret not in caplog.text
    assert all(secret not in repr(r.__dict__) for r in caplog.records)
    assert await audit_actions(app, created["id"]) == [
        (
            "api_client.created",
            {"name": "CRM sync", "role": "agent", "scopes": ["contacts:read", "contacts:write"]},
        ),
        ("api_client.token_issued", {"scope": "contacts:read contacts:write"}),
    ]


async def test_only_org_admins_manage_clients_and_never_with_a_client_token(api, client):
    admin = await api.registered()
    token = admin["access_token"]
    for role in ("agent", "viewer"):
        member = await api.member(token, role=role)
        headers = api.bearer(member["access_token"])
        assert (await client.get("/v1/api-clients", headers=headers)).status_code == 403
        r = await client.post(
            "/v1/api-clients", json={"name": "x", "role": "viewer"}, headers=headers
        )
        assert r.status_code == 403
    created = await new_client(client, api, token, role="org_admin")
    issued = await token_by_form(client, api, created["client_id"], created["client_secret"])
    client_token = issued.json()["access_token"]
    r = await client.get("/v1/api-clients", headers=api.bearer(client_token))
    assert r.status_code == 403, r.text
    # ...though the same org_admin client token does reach other admin routes.
    assert (await client.get("/v1/users", headers=api.bearer(client_token))).status_code == 200


async def test_roles_and_scopes_are_checked_at_creation(api, client):
    token = (await api.registered())["access_token"]
    headers = api.bearer(token)
    r = await client.post(
        "/v1/api-clients", json={"name": "root", "role": "super_admin"}, headers=headers
    )
    assert r.status_code == 403 and r.json()["code"] == "role_not_allowed"
    r = await client.post(
        "/v1/api-clients",
        json={"name": "x", "role": "agent", "scopes": ["contacts:delete"]},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_scope"
    r = await client.post(
        "/v1/api-clients",
        json={"name": "x", "role": "viewer", "scopes": ["contacts:write"]},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_scope"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = await client.post(
        "/v1/api-clients", json={"name": "x", "role": "agent", "expires_at": past}, headers=headers
    )
    assert r.status_code == 422
    assert (await client.get("/v1/api-clients", headers=headers)).json()["items"] == []


async def test_another_organizations_client_is_not_found(api, client):
    mine = (await api.registered())["access_token"]
    theirs = (await api.registered())["access_token"]
    created = await new_client(client, api, theirs)
    cid = created["id"]
    headers = api.bearer(mine)
    assert (await client.delete(f"/v1/api-clients/{cid}", headers=headers)).status_code == 404
    r = await client.post(f"/v1/api-clients/{cid}/rotate-secret", headers=headers)
    assert r.status_code == 404
    assert (await client.get("/v1/api-clients", headers=headers)).json()["items"] == []
    # Untouched: its secret still works.
    issued = await token_by_form(client, api, cid, created["client_secret"])
    assert issued.status_code == 200


async def test_the_grant_by_basic_and_by_form_gives_a_client_token(app, api, client):
    admin = await api.registered()
    created = await new_client(client, api, admin["access_token"], role="viewer")
    cid, secret = created["client_id"], created["client_secret"]
    by_basic = await client.post(
        "/v1/auth/token",
        content="grant_type=client_credentials",
        headers={**basic(cid, secret), **api.origin()},
    )
    by_form = await token_by_form(client, api, cid, secret)
    for r in (by_basic, by_form):
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 900
        assert "refresh_token" not in body and "scope" not in body
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == claims["client_id"] == cid
        assert claims["org"] == admin["user"]["organization_id"] and claims["role"] == "viewer"
        assert "scope" not in claims
    # Verified like any access token (auth's own verifier, the same keys as the JWKS).
    r = await client.get("/v1/users", headers=api.bearer(by_form.json()["access_token"]))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"  # a viewer's role


async def test_refusals_follow_rfc_6749(app, api, client):
    admin = await api.registered()
    created = await new_client(client, api, admin["access_token"], scopes=["contacts:read"])
    cid, secret = created["client_id"], created["client_secret"]

    wrong = await token_by_form(client, api, cid, secret + "x")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert wrong.headers["cache-control"] == "no-store"
    by_basic = await client.post(
        "/v1/auth/token",
        content="grant_type=client_credentials",
        headers={**basic(cid, "nope"), **api.origin()},
    )
    assert by_basic.status_code == 401 and by_basic.json()["error"] == "invalid_client"
    assert by_basic.headers["www-authenticate"].startswith("Basic")
    unknown = await token_by_form(client, api, str(uuid.uuid4()), secret)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"

    r = await token_by_form(client, api, cid, secret, grant_type="password")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await client.post(
        "/v1/auth/token",
        json={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
        headers=api.origin(),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post(  # two authentication methods at once
        "/v1/auth/token",
        content=f"grant_type=client_credentials&client_id={cid}&client_secret={secret}",
        headers={**basic(cid, secret), **api.origin()},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await token_by_form(client, api, cid, secret, scope="contacts:read contacts:write")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await token_by_form(client, api, cid, secret, scope="contacts:read")
    assert r.status_code == 200 and r.json()["scope"] == "contacts:read"

    assert [a for a, _ in await audit_actions(app, cid)] == [
        "api_client.created",
        "api_client.token_refused",
        "api_client.token_refused",
        "api_client.token_refused",
        "api_client.token_issued",
    ]
    reasons = [d["reason"] for a, d in await audit_actions(app, cid) if a.endswith("refused")]
    assert reasons == ["wrong_secret", "wrong_secret", "invalid_scope"]


async def test_an_expired_client_gets_no_token_and_tokens_end_with_the_client(app, api, client):
    admin = await api.registered()
    soon = datetime.now(UTC) + timedelta(seconds=120)
    created = await new_client(client, api, admin["access_token"], expires_at=soon.isoformat())
    cid, secret = created["client_id"], created["client_secret"]
    r = await token_by_form(client, api, cid, secret)
    assert r.status_code == 200
    assert r.json()["expires_in"] <= 120  # never outlives the client
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(api_clients)
            .where(api_clients.c.id == uuid.UUID(cid))
            .values(expires_at=text("now() - interval '1 second'"))
        )
    r = await token_by_form(client, api, cid, secret)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert (await audit_actions(app, cid))[-1] == (
        "api_client.token_refused",
        {"reason": "expired"},
    )


async def test_rotation_and_deletion_end_the_secret_and_revoke_its_tokens(app, api, client):
    admin = await api.registered()
    headers = api.bearer(admin["access_token"])
    created = await new_client(client, api, admin["access_token"])
    cid, old_secret = created["client_id"], created["client_secret"]
    first = (await token_by_form(client, api, cid, old_secret)).json()["access_token"]
    first_sid = jwt.decode(first, options={"verify_signature": False})["sid"]

    r = await client.post(f"/v1/api-clients/{cid}/rotate-secret", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    rotated = r.json()
    new_secret = rotated["client_secret"]
    assert new_secret != old_secret and rotated["secret_rotated_at"] is not None
    assert (await token_by_form(client, api, cid, old_secret)).status_code == 401
    second = await token_by_form(client, api, cid, new_secret)
    assert second.status_code == 200
    second_sid = jwt.decode(second.json()["access_token"], options={"verify_signature": False})[
        "sid"
    ]
    assert second_sid != first_sid
    # The old generation is revoked like a session: every replica's RevocationList drops it.
    revoked = await revoked_sessions(app, cid)
    assert [(e["session_id"], e["reason"]) for e in revoked] == [
        (first_sid, "api_client_secret_rotated")
    ]

    assert (await client.delete(f"/v1/api-clients/{cid}", headers=headers)).status_code == 204
    assert (await client.delete(f"/v1/api-clients/{cid}", headers=headers)).status_code == 404
    r = await client.post(f"/v1/api-clients/{cid}/rotate-secret", headers=headers)
    assert r.status_code == 404
    assert (await token_by_form(client, api, cid, new_secret)).status_code == 401
    revoked = await revoked_sessions(app, cid)
    assert [(e["session_id"], e["reason"]) for e in revoked][1:] == [
        (second_sid, "api_client_deleted")
    ]
    assert (await client.get("/v1/api-clients", headers=headers)).json()["items"] == []
    actions = [a for a, _ in await audit_actions(app, cid)]
    assert actions == [
        "api_client.created",
        "api_client.token_issued",
        "api_client.secret_rotated",
        "api_client.token_refused",
        "api_client.token_issued",
        "api_client.deleted",
        "api_client.token_refused",
    ]


async def test_last_use_is_recorded_at_most_once_a_minute(app, api, client):
    admin = await api.registered()
    created = await new_client(client, api, admin["access_token"])
    cid, secret = created["client_id"], created["client_secret"]
    assert (await token_by_form(client, api, cid, secret)).status_code == 200

    async def last_used() -> datetime:
        listed = await client.get("/v1/api-clients", headers=api.bearer(admin["access_token"]))
        return datetime.fromisoformat(listed.json()["items"][0]["last_used_at"])

    first = await last_used()
    assert (await token_by_form(client, api, cid, secret)).status_code == 200
    assert await last_used() == first  # within the minute: not written again
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(api_clients)
            .where(api_clients.c.id == uuid.UUID(cid))
            .values(last_used_at=text("now() - interval '2 minutes'"))
        )
    assert (await token_by_form(client, api, cid, secret)).status_code == 200
    assert await last_used() > first


async def test_token_requests_are_throttled_per_client(make_settings):
    import httpx

    from pytake_auth.app import create_app

    app = create_app(make_settings(throttle_token_per_client=(2, 60)))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth"
        ) as c:
            r = await c.post(
                "/v1/auth/register",
                json={
                    "email": f"t{uuid.uuid4().hex[:8]}@example.com",
                    "password": "correct horse battery staple",
                    "full_name": "T",
                    "organization_name": "T",
                },
            )
            token = r.json()["access_token"]
            created = (
                await c.post(
                    "/v1/api-clients",
                    json={"name": "busy", "role": "viewer"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
            data = {
                "grant_type": "client_credentials",
                "client_id": created["client_id"],
                "client_secret": created["client_secret"],
            }
            answers = []
            for i in range(3):
                r = await c.post(
                    "/v1/auth/token",
                    data=data,
                    headers={**FORM, "X-Forwarded-For": f"10.9.8.{i + 1}"},
                )
                answers.append(r.status_code)
            assert answers == [200, 200, 429]
            assert int(r.headers["retry-after"]) > 0
    finally:
        await app.state.db.dispose()


async def test_a_scoped_client_token_is_held_to_its_scopes_by_the_service(api, client):
    admin = await api.registered()
    created = await new_client(
        client, api, admin["access_token"], role="org_admin", scopes=["users:read"]
    )
    issued = await token_by_form(client, api, created["client_id"], created["client_secret"])
    headers = api.bearer(issued.json()["access_token"])
    assert (await client.get("/v1/users", headers=headers)).status_code == 200
    r = await client.post(
        "/v1/users",
        json={"email": api.new_email(), "full_name": "X", "role": "agent", "password": "x" * 12},
        headers=headers,
    )
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert r.json()["required_scope"] == "users:write"
