"""The main loop end to end, through the gateway only, on real PostgreSQL and Kafka."""

import asyncio
import hashlib
import hmac
import json

import httpx

from pytake_devstack.mainloop import text_webhook


async def test_customer_message_reaches_agent_and_reply_reaches_customer(loop):
    result = await loop.run()
    inbound, outbound = result.messages[0], result.messages[-1]
    assert inbound["direction"] == "inbound"
    assert inbound["text"] == "Hi! My order #1042 has not arrived."
    assert outbound["direction"] == "outbound"
    assert outbound["status"] == "read"
    assert outbound["wamid"]
    # Meta (the simulator) received exactly one correct Graph API call.
    assert len(result.graph_calls) == 1
    body = result.graph_calls[0]["body"]
    assert body["messaging_product"] == "whatsapp"
    assert body["to"] == result.customer_wa_id
    assert body["type"] == "text"
    assert body["text"]["body"] == "Sorry about that — it ships today!"
    assert result.graph_calls[0]["wamid"] == outbound["wamid"]


def _payload(phone_number_id: str, wa_id: str, text: str) -> bytes:
    raw, _ = text_webhook(phone_number_id, wa_id, text, name="Dup Tester", tag="E2E")
    return raw


def _sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


async def test_same_webhook_three_times_yields_one_message(loop, stack):
    tenant = await loop.register("Dup Org")
    number = await loop.connect_number(tenant)
    raw = _payload(number.phone_number_id, "15557654321", "only once please")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": _sign(number.app_secret, raw),
    }
    async with httpx.AsyncClient(base_url=stack.url("api-gateway")) as gw:
        for _ in range(3):
            r = await gw.post("/webhooks/whatsapp", content=raw, headers=headers)
            assert r.status_code == 200
    wamid = json.loads(raw)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    conv = await loop.conversation_with_message(tenant, wamid)
    await asyncio.sleep(2.0)  # give any duplicate time to show up
    msgs = await loop.messages(tenant, conv["id"])
    assert [m["wamid"] for m in msgs].count(wamid) == 1
    r = await loop.gw.get("/v1/conversations", headers=tenant.headers)
    assert len(r.json()["items"]) == 1


async def test_unsigned_or_wrongly_signed_webhook_is_rejected_and_stores_nothing(loop, stack):
    tenant = await loop.register("Sig Org")
    number = await loop.connect_number(tenant)
    raw = _payload(number.phone_number_id, "15550001111", "forged")
    async with httpx.AsyncClient(base_url=stack.url("api-gateway")) as gw:
        unsigned = await gw.post(
            "/webhooks/whatsapp", content=raw, headers={"Content-Type": "application/json"}
        )
        wrong = await gw.post(
            "/webhooks/whatsapp",
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": _sign("not-the-secret", raw),
            },
        )
        tampered = await gw.post(
            "/webhooks/whatsapp",
            content=raw + b" ",
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": _sign(number.app_secret, raw),
            },
        )
    assert unsigned.status_code == 401
    assert wrong.status_code == 401
    assert tampered.status_code == 401
    assert unsigned.headers["content-type"].startswith("application/problem+json")
    # A signed message sent afterwards is the only one that shows up.
    wamid = await loop.customer_says(number, "15550001111", "the real one")
    conv = await loop.conversation_with_message(tenant, wamid)
    msgs = await loop.messages(tenant, conv["id"])
    assert [m["text"] for m in msgs] == ["the real one"]


async def test_retried_reply_is_sent_once_and_other_tenants_see_nothing(loop, stack):
    tenant = await loop.register("Retry Org")
    number = await loop.connect_number(tenant)
    wamid = await loop.customer_says(number, "15552223333", "hello?")
    conv = await loop.conversation_with_message(tenant, wamid)
    first = await loop.reply(tenant, conv["id"], "hi there", key="reply-1")
    second = await loop.reply(tenant, conv["id"], "hi there", key="reply-1")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    await loop.wait_status(tenant, conv["id"], first.json()["id"], "read")
    assert len(await loop.graph_calls(number.phone_number_id)) == 1
    intruder = await loop.register("Intruder Org")
    r = await loop.gw.get(f"/v1/conversations/{conv['id']}", headers=intruder.headers)
    assert r.status_code == 404
    r = await loop.gw.get(f"/v1/conversations/{conv['id']}/messages", headers=intruder.headers)
    assert r.status_code == 404
    r = await loop.reply(intruder, conv["id"], "sneaky")
    assert r.status_code == 404


async def test_protected_routes_need_a_valid_token(stack):
    async with httpx.AsyncClient(base_url=stack.url("api-gateway")) as gw:
        r = await gw.get("/v1/conversations")
        assert r.status_code == 401
        r = await gw.get("/v1/conversations", headers={"Authorization": "Bearer not.a.jwt"})
        assert r.status_code == 401
        r = await gw.get("/.well-known/jwks.json")
        assert r.status_code == 200 and r.json()["keys"]
