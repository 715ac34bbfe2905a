import uuid

from sqlalchemy import select

from pytake_whatsapp_gateway.numbers import verify_token_hash
from pytake_whatsapp_gateway.tables import numbers

from .helpers import counts, events, register

SECRETS = ("EAAG-very-secret-token", "app-secret-abcdef", "verify-token-xyz")


def registration(phone_number_id: str = "106540352242922") -> dict:
    token, app_secret, verify = SECRETS
    return {
        "phone_number_id": phone_number_id,
        "waba_id": "102290129340398",
        "display_phone_number": "+1 555 010 0000",
        "access_token": token,
        "app_secret": app_secret,
        "verify_token": verify,
    }


async def test_register_number_keeps_secrets_encrypted_and_out_of_answers(app, client, tokens):
    org = uuid.uuid4()
    r = await client.post(
        "/v1/whatsapp/numbers", json=registration(), headers=tokens.headers(organization_id=org)
    )
    assert r.status_code == 201, r.text
    number = r.json()
    assert r.headers["location"] == f"/v1/whatsapp/numbers/{number['id']}"
    assert number["organization_id"] == str(org)
    assert number["phone_number_id"] == "106540352242922"
    assert number["status"] == "connected"
    assert number["uses_platform_app_secret"] is False
    assert not {"access_token", "app_secret", "verify_token"} & number.keys()
    for secret in SECRETS:
        assert secret not in r.text

    async with app.state.db.transaction(bypass_rls=True) as s:
        row = (await s.execute(select(numbers))).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    for secret in SECRETS:
        assert secret not in stored
    assert row["verify_token_hash"] == verify_token_hash(SECRETS[2])
    box = app.state.secret_box
    assert box.decrypt(row["access_token_enc"]) == SECRETS[0]
    assert box.decrypt(row["app_secret_enc"]) == SECRETS[1]

    [event] = await events(app)
    assert event["type"] == "pytake.whatsapp.number.registered.v1"
    assert event["subject"] == number["id"] and event["tenantid"] == str(org)
    assert event["data"] == {
        "number_id": number["id"],
        "organization_id": str(org),
        "phone_number_id": "106540352242922",
        "waba_id": "102290129340398",
        "display_phone_number": "+1 555 010 0000",
        "messaging_limit_tier": "TIER_2K",  # read from the Graph API
        "throughput_per_second": 80,
    }
    for secret in SECRETS:
        assert secret not in str(event)

    r = await client.get(
        f"/v1/whatsapp/numbers/{number['id']}",
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    assert r.status_code == 200 and r.json() == number


async def test_number_without_app_secret_uses_the_platform_app(client, tokens):
    body = registration()
    del body["app_secret"]
    r = await client.post(
        "/v1/whatsapp/numbers", json=body, headers=tokens.headers(organization_id=uuid.uuid4())
    )
    assert r.status_code == 201
    assert r.json()["uses_platform_app_secret"] is True


async def test_a_number_connects_to_one_organization_only(app, client, tokens):
    first, second = uuid.uuid4(), uuid.uuid4()
    await register(client, tokens, first, "111")
    for org in (first, second):
        r = await client.post(
            "/v1/whatsapp/numbers",
            json=registration("111"),
            headers=tokens.headers(organization_id=org),
        )
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "number_already_connected"
    assert (await counts(app))["numbers"] == 1


async def test_other_organizations_numbers_are_not_found(client, tokens):
    mine, other = uuid.uuid4(), uuid.uuid4()
    theirs = await register(client, tokens, other, "222")
    r = await client.get(
        f"/v1/whatsapp/numbers/{theirs['id']}", headers=tokens.headers(organization_id=mine)
    )
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    r = await client.get("/v1/whatsapp/numbers", headers=tokens.headers(organization_id=mine))
    assert r.json() == {"items": [], "next_cursor": None}


async def test_only_admins_register(client, tokens):
    org = uuid.uuid4()
    for role in ("viewer", "agent"):
        r = await client.post(
            "/v1/whatsapp/numbers",
            json=registration(),
            headers=tokens.headers(organization_id=org, role=role),
        )
        assert r.status_code == 403
    r = await client.post("/v1/whatsapp/numbers", json=registration())
    assert r.status_code == 401
    r = await client.post(
        "/v1/whatsapp/numbers",
        json=registration(),
        headers=tokens.headers(organization_id=org, role="super_admin"),
    )
    assert r.status_code == 201


async def test_invalid_registration_does_not_echo_secrets(client, tokens):
    body = registration()
    body["phone_number_id"] = "not a valid id!"
    r = await client.post(
        "/v1/whatsapp/numbers", json=body, headers=tokens.headers(organization_id=uuid.uuid4())
    )
    assert r.status_code == 422
    for secret in SECRETS:
        assert secret not in r.text


async def test_list_is_cursor_paginated(client, tokens):
    org = uuid.uuid4()
    created = [await register(client, tokens, org, str(300 + i)) for i in range(3)]
    headers = tokens.headers(organization_id=org, role="agent")
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/whatsapp/numbers", params=params, headers=headers)
        assert r.status_code == 200
        page = r.json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(n["id"] for n in created) and len(seen) == 3
    r = await client.get("/v1/whatsapp/numbers", params={"cursor": "garbage"}, headers=headers)
    assert r.status_code == 422


async def test_idempotency_key_replays_the_first_answer(app, client, tokens):
    org, user = uuid.uuid4(), uuid.uuid4()
    headers = tokens.headers(organization_id=org, user_id=user) | {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/whatsapp/numbers", json=registration(), headers=headers)
    again = await client.post("/v1/whatsapp/numbers", json=registration(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    changed = registration() | {"access_token": "another-token"}
    r = await client.post("/v1/whatsapp/numbers", json=changed, headers=headers)
    assert r.status_code == 422
    c = await counts(app)
    assert c["numbers"] == 1 and c["outbox"] == 1
