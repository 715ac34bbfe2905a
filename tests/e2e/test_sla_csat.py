"""Automation's SLA and CSAT through the platform: a first-response target breached and
shown on the conversation; a resolution surveyed and the customer's rating recorded."""

import secrets
import time
import uuid
from typing import Any

from pytake_devstack.mainloop import MainLoop, SimNumber, Tenant, poll


async def _conversation(loop: MainLoop, tenant: Tenant, number: SimNumber, wa_id: str) -> dict:
    wamid = await loop.customer_says(number, wa_id, "Hello, my order never arrived")
    return await loop.conversation_with_message(tenant, wamid)


async def test_an_unanswered_conversation_breaches_its_first_response_target(loop):
    tenant = await loop.register("SLA Org")
    number = await loop.connect_number(tenant)
    policy = {
        "name": "Everyone",
        "is_default": True,
        "targets": {"normal": {"first_response_minutes": 1, "resolution_minutes": 600}},
    }
    key = {**tenant.headers, "Idempotency-Key": uuid.uuid4().hex}
    r = await loop.call("POST", "/v1/automation/sla-policies", json=policy, headers=key)
    assert r.status_code == 201, r.text

    conv = await _conversation(loop, tenant, number, "5511900001111")
    url = f"/v1/conversations/{conv['id']}"

    async def applied() -> dict[str, Any] | None:
        body = (await loop.call("GET", url, headers=tenant.headers)).json()
        return body if body.get("first_response_due_at") else None

    shown = await poll(applied, "the SLA's due times on the conversation")
    assert shown["sla_policy_id"] == r.json()["id"]
    assert shown["first_response_breached_at"] is None

    async def at_risk() -> list[str] | None:
        page = await loop.call(
            "GET", "/v1/conversations", params={"sla": "at_risk"}, headers=tenant.headers
        )
        ids = [c["id"] for c in page.json()["items"]]
        return ids or None

    assert await poll(at_risk, "the conversation to be at risk") == [conv["id"]]

    async def breached() -> dict[str, Any] | None:
        page = await loop.call(
            "GET", "/v1/conversations", params={"sla": "breached"}, headers=tenant.headers
        )
        items = page.json()["items"]
        return items[0] if items else None

    # One minute after it opened, automation's timer reports the breach.
    item = await poll(breached, "the first-response breach", timeout=120.0, interval=1.0)
    assert item["id"] == conv["id"]
    assert item["first_response_breached_at"] >= shown["first_response_due_at"]
    assert item["resolution_breached_at"] is None


def _list_reply(phone_number_id: str, wa_id: str, row: dict[str, str]) -> dict[str, Any]:
    message = {
        "from": wa_id,
        "id": "wamid.CSAT" + secrets.token_hex(12),
        "timestamp": str(int(time.time())),
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": row},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Grace Customer"}, "wa_id": wa_id}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


async def test_a_resolution_is_surveyed_and_the_rating_recorded(loop):
    tenant = await loop.register("CSAT Org")
    number = await loop.connect_number(tenant)
    settings = {"enabled": True, "question": "How did we do today?"}
    r = await loop.call("PUT", "/v1/automation/csat", json=settings, headers=tenant.headers)
    assert r.status_code == 200, r.text

    wa_id = "5511900002222"
    conv = await _conversation(loop, tenant, number, wa_id)
    url = f"/v1/conversations/{conv['id']}"
    assert (
        await loop.reply(tenant, conv["id"], "Found it: it arrives tomorrow")
    ).status_code == 202
    r = await loop.call(
        "POST", f"{url}/status", json={"status": "resolved"}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text

    async def survey() -> dict[str, Any] | None:
        for call in await loop.graph_calls(number.phone_number_id):
            if call["body"].get("type") == "interactive":
                return dict(call["body"]["interactive"])
        return None

    interactive = await poll(survey, "the CSAT survey to reach the Graph API")
    assert interactive["type"] == "list"
    assert interactive["body"]["text"] == "How did we do today?"
    rows = interactive["action"]["sections"][0]["rows"]
    assert len(rows) == 5
    [good] = [row for row in rows if row["id"].endswith(":4")]

    r = await loop.sim.post(
        "/_sim/deliveries/raw",
        json={
            "phone_number_id": number.phone_number_id,
            "payload": _list_reply(number.phone_number_id, wa_id, good),
        },
    )
    r.raise_for_status()
    assert r.json()["status_code"] == 200

    async def recorded() -> dict[str, Any] | None:
        page = await loop.call("GET", "/v1/automation/csat/responses", headers=tenant.headers)
        items = page.json()["items"] if page.status_code == 200 else []
        return items[0] if items else None

    response = await poll(recorded, "the rating to be recorded")
    assert (response["rating"], response["conversation_id"]) == (4, conv["id"])
    report = (await loop.call("GET", "/v1/automation/csat/report", headers=tenant.headers)).json()
    assert (report["organization"]["answered"], report["organization"]["average"]) == (1, 4.0)
    # The rating did not reopen the conversation.
    assert (await loop.call("GET", url, headers=tenant.headers)).json()["status"] == "resolved"
