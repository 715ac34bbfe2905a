"""An agent writes first: an approved template, filled from the contact, reaches Meta."""

import uuid
from typing import Any

from pytake_devstack.mainloop import poll


async def test_a_started_conversation_sends_the_template_through_the_gateway(loop):
    tenant = await loop.register("Proactive Org")
    number = await loop.connect_number(tenant)
    headers = tenant.headers
    r = await loop.call("GET", f"/v1/whatsapp/numbers/{number.id}", headers=headers)
    r.raise_for_status()
    waba_id = r.json()["waba_id"]

    # A template, approved by Meta's review (the simulator's webhook).
    template = {
        "name": "order_shipped",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} ships today."}],
    }
    r = await loop.call(
        "POST", f"/v1/whatsapp/numbers/{number.id}/templates", json=template, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await loop.sim.post(
        f"/_sim/templates/{waba_id}/order_shipped/status", json={"status": "APPROVED"}
    )
    r.raise_for_status()

    # A contact who never wrote, with a custom attribute.
    definition = {"key": "order", "label": "Order", "type": "text"}
    r = await loop.call("POST", "/v1/contact-attributes", json=definition, headers=headers)
    assert r.status_code == 201, r.text
    contact = {"phone": "+14155550123", "name": "Grace", "attributes": {"order": "#1042"}}
    r = await loop.call("POST", "/v1/contacts", json=contact, headers=headers)
    assert r.status_code == 201, r.text
    contact_id = r.json()["id"]

    start = {
        "contact_id": contact_id,
        "number_id": number.id,
        "template": {
            "name": "order_shipped",
            "language": "en_US",
            "parameters": ["{{contact.name}}", "{{contact.attributes.order}}"],
        },
    }
    key = {**headers, "Idempotency-Key": uuid.uuid4().hex}

    async def started() -> dict[str, Any] | None:
        # conversations learns the number, template and contact from events: until then
        # the start is refused (404 / 422) and nothing is stored under the key
        resp = await loop.call("POST", "/v1/conversations", json=start, headers=key)
        return dict(resp.json()) if resp.status_code == 201 else None

    answer = await poll(started, "conversations to know the number, template and contact")
    assert answer["reused"] is False
    conversation, message = answer["conversation"], answer["message"]
    assert message["text"] == "Hi Grace, order #1042 ships today."

    sent = await loop.wait_status(tenant, conversation["id"], message["id"], "sent")
    [call] = await loop.graph_calls(number.phone_number_id)
    body = call["body"]
    assert (body["to"], body["type"]) == ("14155550123", "template")
    assert body["template"] == {
        "name": "order_shipped",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Grace"},
                    {"type": "text", "text": "#1042"},
                ],
            }
        ],
    }
    assert call["wamid"] == sent["wamid"]

    # The same key again: the same answer, no second Graph API call.
    r = await loop.call("POST", "/v1/conversations", json=start, headers=key)
    assert (r.status_code, r.json()) == (201, answer)
    assert len(await loop.graph_calls(number.phone_number_id)) == 1
