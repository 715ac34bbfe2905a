"""A campaign through the whole platform: contacts tagged and opted in, a MARKETING template
approved in the simulator, a campaign to the tag; each recipient's template reaches the
Graph API once, and a customer's reply lands in the conversation that holds the campaign's
message and marks the recipient ``replied``."""

import uuid
from typing import Any

from pytake_devstack.mainloop import poll
from pytake_devstack.showcase import probe_audience


async def test_a_campaign_to_a_tag_reaches_each_contact_once_and_sees_replies(loop):
    tenant = await loop.register("Campaign Org")
    number = await loop.connect_number(tenant)
    headers = tenant.headers
    r = await loop.call("GET", f"/v1/whatsapp/numbers/{number.id}", headers=headers)
    r.raise_for_status()
    waba_id = r.json()["waba_id"]
    template = {
        "name": "spring_sale",
        "language": "en_US",
        "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Hi {{1}}, spring sale today!"}],
    }
    r = await loop.call(
        "POST", f"/v1/whatsapp/numbers/{number.id}/templates", json=template, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await loop.sim.post(
        f"/_sim/templates/{waba_id}/spring_sale/status", json={"status": "APPROVED"}
    )
    r.raise_for_status()

    r = await loop.call("POST", "/v1/tags", json={"name": "spring"}, headers=headers)
    assert r.status_code == 201, r.text
    tag = r.json()["id"]
    people = {"+14155550141": "Ada", "+14155550142": "Linus", "+14155550143": "Barbara"}
    contacts: dict[str, str] = {}
    for phone, name in people.items():
        r = await loop.call(
            "POST", "/v1/contacts", json={"phone": phone, "name": name}, headers=headers
        )
        assert r.status_code == 201, r.text
        contact_id = r.json()["id"]
        contacts[contact_id] = phone
        r = await loop.call("PUT", f"/v1/contacts/{contact_id}/tags/{tag}", headers=headers)
        assert r.status_code == 204, r.text
        if name != "Barbara":  # Barbara never opted in: excluded from a MARKETING campaign
            r = await loop.call(
                "POST",
                f"/v1/contacts/{contact_id}/consent",
                json={"marketing_opt_in": True, "source": "web form"},
                headers=headers,
            )
            assert r.status_code == 200, r.text

    body = {
        "name": "Spring sale",
        "number_id": number.id,
        "template": {
            "name": "spring_sale",
            "language": "en_US",
            "parameters": [{"value": "{{contact.name}}", "default": "there"}],
        },
        "audience": {"tags_any": [tag]},
    }

    async def replica_ready() -> bool | None:
        # campaigns' replicas fill in as contacts' events arrive: the probe shows what a
        # start would freeze now
        frozen = await probe_audience(loop, tenant, body)
        ready = frozen is not None and frozen["recipients_total"] == 2
        return (ready and frozen["exclusions"] == {"no_marketing_consent": 1}) or None

    # (the free plan allows one campaign at a time: the probes are cancelled first)
    await poll(replica_ready, "campaigns to know the number, template, tag and contacts")
    r = await loop.call("POST", "/v1/campaigns", json=body, headers=headers)
    assert r.status_code == 201, r.text
    campaign = r.json()
    r = await loop.call("POST", f"/v1/campaigns/{campaign['id']}/start", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["recipients_total"] == 2

    async def done() -> dict[str, Any] | None:
        r = await loop.call("GET", f"/v1/campaigns/{campaign['id']}/stats", headers=headers)
        stats = dict(r.json())
        return stats if stats["status"] == "completed" else None

    stats = await poll(done, "the campaign to complete", 60)
    assert stats["recipients_total"] == 2 and stats["exclusions"] == {"no_marketing_consent": 1}
    # the simulator goes on to delivered and read: at completion a recipient may be any of them
    assert sum(stats["by_status"][s] for s in ("sent", "delivered", "read")) == 2
    calls = [
        c for c in await loop.graph_calls(number.phone_number_id) if c["body"]["type"] == "template"
    ]
    assert len(calls) == stats["recipients_total"]  # each recipient once
    assert len({c["body"]["to"] for c in calls}) == len(calls)
    assert "14155550143" not in {c["body"]["to"] for c in calls}  # no consent, no marketing

    r = await loop.call("GET", f"/v1/campaigns/{campaign['id']}/recipients", headers=headers)
    recipients = r.json()["items"]
    first = recipients[0]
    wa_id = contacts[first["contact_id"]].lstrip("+")
    wamid = await loop.customer_says(number, wa_id, "Yes please!", name="Customer")
    conversation = await loop.conversation_with_message(tenant, wamid)
    assert conversation["id"] == first["conversation_id"]  # where the campaign's message is

    async def replied() -> dict[str, Any] | None:
        r = await loop.call(
            "GET",
            f"/v1/campaigns/{campaign['id']}/recipients",
            params={"status": "replied"},
            headers=headers,
        )
        items = r.json()["items"]
        return items[0] if items else None

    marked = await poll(replied, "the recipient to be marked replied")
    assert marked["id"] == first["id"]
    assert uuid.UUID(marked["message_id"])
