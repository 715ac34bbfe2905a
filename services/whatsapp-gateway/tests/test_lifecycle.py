"""Numbers over time: PATCH, removal, plan limit, secret rotation, WABA-level webhooks."""

import uuid

from sqlalchemy import select

from pytake_common.crypto import SecretBox
from pytake_common.errors import PlanLimitExceeded
from pytake_whatsapp_gateway.__main__ import rotate
from pytake_whatsapp_gateway.tables import numbers, templates

from .helpers import change, envelope, events, raw, register, signed, text_message

SECRET = "secret-of-the-app"
UPDATED = "pytake.whatsapp.number.updated.v1"
TEMPLATE_CHANGED = "pytake.whatsapp.template.status_changed.v1"


async def connect(client, tokens, org, pnid, waba, display="+1 555-0100"):
    body = {
        "phone_number_id": pnid,
        "waba_id": waba,
        "display_phone_number": display,
        "access_token": "EAAG-old",
        "app_secret": SECRET,
        "verify_token": "v",
    }
    r = await client.post(
        "/v1/whatsapp/numbers", json=body, headers=tokens.headers(organization_id=org)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_patch_changes_settings_and_a_new_token_reconnects(app, client, tokens):
    org = uuid.uuid4()
    number = await register(client, tokens, org, "300", app_secret=SECRET)
    assert number["throughput_per_second"] == 80 and number["quality_rating"] is None
    headers = tokens.headers(organization_id=org)
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(numbers.update().values(status="disconnected"))
    url = f"/v1/whatsapp/numbers/{number['id']}"
    r = await client.patch(url, json={"throughput_per_second": 1001}, headers=headers)
    assert r.status_code == 422
    r = await client.patch(
        url,
        json={
            "throughput_per_second": 250,
            "access_token": "EAAG-new",
            "display_phone_number": "x",
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["status"], answer["throughput_per_second"]) == ("connected", 250)
    assert "EAAG" not in r.text
    async with app.state.db.transaction(organization_id=org) as s:
        stored = (await s.execute(select(numbers.c.access_token_enc))).scalar_one()
    assert app.state.secret_box.decrypt(stored) == "EAAG-new"
    [event] = await events(app, UPDATED)
    assert event["data"]["changed"] == [
        "display_phone_number",
        "access_token",
        "status",
        "throughput_per_second",
    ]
    assert event["data"]["status"] == "connected"
    # Another organization, and agents, cannot change it.
    other = tokens.headers(organization_id=uuid.uuid4())
    assert (
        await client.patch(url, json={"display_phone_number": "y"}, headers=other)
    ).status_code == 404
    agent = tokens.headers(organization_id=org, role="agent")
    assert (
        await client.patch(url, json={"display_phone_number": "y"}, headers=agent)
    ).status_code == 403


async def test_delete_removes_softly_and_the_number_can_connect_again(app, client, tokens):
    org = uuid.uuid4()
    number = await register(client, tokens, org, "301", app_secret=SECRET)
    headers = tokens.headers(organization_id=org)
    url = f"/v1/whatsapp/numbers/{number['id']}"
    assert (
        await client.delete(url, headers=tokens.headers(organization_id=uuid.uuid4()))
    ).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    assert (await client.get("/v1/whatsapp/numbers", headers=headers)).json()["items"] == []
    [removed] = await events(app, "pytake.whatsapp.number.removed.v1")
    assert removed["data"] == {
        "number_id": number["id"],
        "organization_id": str(org),
        "phone_number_id": "301",
    }
    # Webhooks for a removed number are acknowledged but not recorded.
    body = raw(envelope([change("301", messages=[text_message("wamid.gone")])]))
    r = await client.post("/webhooks/whatsapp", content=body, headers=signed(body, SECRET))
    assert r.status_code == 200
    assert await events(app, "pytake.whatsapp.message.received.v1") == []
    again = await register(client, tokens, org, "301", app_secret=SECRET)
    assert again["id"] != number["id"]


async def test_the_plans_number_limit_is_enforced(app, client, tokens):
    class Directory:
        def is_suspended(self, org):
            return False

        async def check_limit(self, org, name, used):
            if name == "numbers" and used >= 1:
                raise PlanLimitExceeded(limit="numbers", allowed=1, used=used)

    app.state.organizations = Directory()
    org = uuid.uuid4()
    await register(client, tokens, org, "302", app_secret=SECRET)
    body = {
        "phone_number_id": "303",
        "waba_id": "W",
        "display_phone_number": "1",
        "access_token": "t",
        "verify_token": "v",
    }
    r = await client.post(
        "/v1/whatsapp/numbers", json=body, headers=tokens.headers(organization_id=org)
    )
    assert r.status_code == 402
    assert r.json()["code"] == "plan_limit_exceeded"


async def test_rotate_secrets_reencrypts_with_the_first_key(app, client, tokens, settings):
    org = uuid.uuid4()
    await register(client, tokens, org, "304", app_secret=SECRET, access_token="EAAG-tok")
    new_key = "n" * 40
    rotated = settings.model_copy(
        update={"secret_key": settings.secret_key.__class__(f"{new_key},{settings.secret}")}
    )
    assert await rotate(rotated) == 1
    async with app.state.db.transaction(organization_id=org) as s:
        row = (await s.execute(select(numbers.c.access_token_enc, numbers.c.app_secret_enc))).one()
    only_new = SecretBox(new_key)
    assert only_new.decrypt(row.access_token_enc) == "EAAG-tok"
    assert only_new.decrypt(row.app_secret_enc) == SECRET


async def test_waba_changes_update_templates_and_numbers_once(app, client, tokens):
    org = uuid.uuid4()
    first = await connect(client, tokens, org, "310", "WABA7", display="+1 555-0100")
    second = await connect(client, tokens, org, "311", "WABA7", display="+1 555-0111")
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA7",
                "time": 1764000000,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 9876,
                            "message_template_name": "pedido_enviado",
                            "message_template_language": "pt_BR",
                            "reason": "NONE",
                        },
                    },
                    {
                        "field": "template_category_update",
                        "value": {
                            "message_template_id": 9876,
                            "message_template_name": "pedido_enviado",
                            "message_template_language": "pt_BR",
                            "previous_category": "MARKETING",
                            "new_category": "UTILITY",
                        },
                    },
                    {
                        "field": "phone_number_quality_update",
                        "value": {
                            "display_phone_number": "15550111",
                            "event": "FLAGGED",
                            "current_limit": "TIER_10K",
                        },
                    },
                ],
            }
        ],
    }
    body = raw(payload)
    assert (
        await client.post("/webhooks/whatsapp", content=body, headers=signed(body, "wrong"))
    ).status_code == 401
    for _ in range(2):  # Meta's redelivery changes nothing the second time
        r = await client.post("/webhooks/whatsapp", content=body, headers=signed(body, SECRET))
        assert r.status_code == 200
    changed = await events(app, TEMPLATE_CHANGED)
    assert [e["data"]["status"] for e in changed] == ["APPROVED", "APPROVED"]
    assert changed[-1]["data"]["category"] == "UTILITY"
    assert changed[-1]["data"]["waba_id"] == "WABA7" and changed[-1]["data"]["number_id"] is None
    async with app.state.db.transaction(organization_id=org) as s:
        template = (await s.execute(select(templates))).mappings().one()
        rows = {r.id: r for r in (await s.execute(select(numbers))).all()}
    assert (template["name"], template["status"], template["meta_template_id"]) == (
        "pedido_enviado",
        "APPROVED",
        "9876",
    )
    flagged = rows[uuid.UUID(second["id"])]
    assert (flagged.quality_rating, flagged.messaging_limit_tier) == ("RED", "TIER_10K")
    assert rows[uuid.UUID(first["id"])].quality_rating is None
    [updated] = await events(app, UPDATED)
    assert updated["data"]["number_id"] == second["id"]
    assert updated["data"]["changed"] == ["quality_rating", "messaging_limit_tier"]
    # The account update with a new tier for the whole WABA.
    account = raw(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA7",
                    "time": 1764000100,
                    "changes": [
                        {
                            "field": "account_update",
                            "value": {
                                "event": "ACCOUNT_UPDATE",
                                "messaging_limit_tier": "TIER_100K",
                            },
                        }
                    ],
                }
            ],
        }
    )
    r = await client.post("/webhooks/whatsapp", content=account, headers=signed(account, SECRET))
    assert r.status_code == 200
    assert len(await events(app, UPDATED)) == 3
