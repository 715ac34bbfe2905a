"""A chatbot flow end to end: a keyword rule starts a four-step flow with reply buttons;
the customer answers through Meta's webhooks (a button press included) and the flow
hands the conversation to a department with a note summarising the answers."""

from __future__ import annotations

import asyncio
from typing import Any

from pytake_devstack.flow_sample import HANDOFF_MESSAGE, NOTE, triage_flow
from pytake_devstack.mainloop import MainLoop, SimNumber, Tenant, poll

CUSTOMER = "15550427001"


async def _sent_to_customer(loop: MainLoop, number: SimNumber, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        calls = [c for c in await loop.graph_calls(number.phone_number_id) if c["to"] == CUSTOMER]
        return calls if len(calls) >= count else None

    return await poll(enough, f"{count} messages to the customer", timeout=60)


async def _ok(loop: MainLoop, tenant: Tenant, method: str, url: str, **body: Any) -> Any:
    r = await loop.call(method, url, json=body or None, headers=tenant.headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_four_step_flow_with_buttons_ends_in_a_handoff(loop: MainLoop) -> None:
    tenant = await loop.register("Flow Org")
    number = await loop.connect_number(tenant)
    department = await _ok(loop, tenant, "POST", "/v1/departments", name="Support")
    # contacts stores only defined attributes: the flow keeps the e-mail in one
    await _ok(
        loop, tenant, "POST", "/v1/contact-attributes", key="email", label="E-mail", type="text"
    )
    flow = await _ok(
        loop,
        tenant,
        "POST",
        "/v1/automation/flows",
        name="Triage",
        definition=triage_flow(department["id"]),
    )
    version = await _ok(loop, tenant, "POST", f"/v1/automation/flows/{flow['id']}/publish")
    assert version["version"] == 1
    await _ok(
        loop,
        tenant,
        "POST",
        "/v1/automation/rules",
        name="Help starts the triage",
        trigger={"type": "message_received"},
        conditions=[{"type": "text_contains", "words": ["help"]}],
        actions=[{"type": "start_flow", "flow_id": flow["id"]}],
    )

    await loop.customer_says(number, CUSTOMER, "Hello, I need help")
    [buttons] = await _sent_to_customer(loop, number, 1)
    assert buttons["type"] == "interactive"
    interactive = buttons["body"]["interactive"]
    assert interactive["type"] == "button"
    assert [b["reply"]["id"] for b in interactive["action"]["buttons"]] == ["sales", "support"]

    pressed = await loop.sim.post(
        "/_sim/inbound",
        json={
            "phone_number_id": number.phone_number_id,
            "from_wa_id": CUSTOMER,
            "profile_name": "Grace Customer",
            "interactive": {"type": "button_reply", "id": "support", "title": "Support"},
        },
    )
    assert pressed.status_code == 200 and pressed.json()["status_code"] == 200
    message = pressed.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["context"]["id"] == buttons["wamid"]
    calls = await _sent_to_customer(loop, number, 2)
    assert calls[1]["body"]["text"]["body"] == "Your name?"

    await loop.customer_says(number, CUSTOMER, "Grace")
    calls = await _sent_to_customer(loop, number, 3)
    assert calls[2]["body"]["text"]["body"] == "Thanks Grace. Your e-mail?"

    await loop.customer_says(number, CUSTOMER, "grace@example.com")
    calls = await _sent_to_customer(loop, number, 4)
    assert calls[3]["body"]["text"]["body"] == HANDOFF_MESSAGE

    async def handed_off() -> dict[str, Any] | None:
        r = await loop.call("GET", "/v1/conversations", headers=tenant.headers)
        convs = r.json()["items"]
        return convs[0] if convs and convs[0].get("department_id") == department["id"] else None

    conversation = await poll(handed_off, "the conversation to reach the department", 60)
    messages = await loop.messages(tenant, conversation["id"])
    notes = [m for m in messages if m["direction"] == "note"]
    assert [n["text"] for n in notes] == [
        f"{NOTE}\nTopic: Support\nName: Grace\nE-mail: grace@example.com"
    ]
    bot = [m for m in messages if m["direction"] == "outbound"]
    assert len(bot) == 4 and {m.get("sender_type") for m in bot} == {"automation"}

    async def email_attribute() -> str | None:
        r = await loop.call(
            "GET", f"/v1/contacts/{conversation['contact_id']}", headers=tenant.headers
        )
        value = r.json().get("attributes", {}).get("email")
        return str(value) if value else None

    assert await poll(email_attribute, "contacts to store the e-mail", 60) == "grace@example.com"
    # the flow has ended: another message gets no bot answer
    await loop.customer_says(number, CUSTOMER, "thanks!")
    await asyncio.sleep(2.0)
    assert len(await _sent_to_customer(loop, number, 4)) == 4
