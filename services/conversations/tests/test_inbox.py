"""Canned responses, marking read, inbox filters and counts, metrics."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from .helpers import (
    Customer,
    deliver,
    emitted,
    message_rows,
    opened,
    platform_event,
    set_conversation,
    user_created,
)


@pytest.fixture
def org():
    return uuid.uuid4()


async def test_canned_responses_crud_unique_shortcode_and_rendering(app, client, tokens, org):
    admin = tokens.headers(organization_id=org, role="org_admin")
    body = {
        "shortcode": "hello",
        "title": "Greeting",
        "body": "Hi {{contact.name}}, {{agent.name}} here",
    }
    r = await client.post(
        "/v1/canned-responses", json=body, headers={**admin, "Idempotency-Key": "c"}
    )
    again = await client.post(
        "/v1/canned-responses", json=body, headers={**admin, "Idempotency-Key": "c"}
    )
    assert r.status_code == again.status_code == 201
    assert r.json()["id"] == again.json()["id"]
    canned_id = r.json()["id"]
    dup = await client.post(
        "/v1/canned-responses", json={**body, "shortcode": "HELLO"}, headers=admin
    )
    assert (dup.status_code, dup.json()["code"]) == (409, "shortcode_taken")
    bad = await client.post(
        "/v1/canned-responses",
        json={**body, "shortcode": "x", "body": "{{contact.ssn}}"},
        headers=admin,
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_placeholder")
    agent_id = uuid.uuid4()
    agent = tokens.headers(organization_id=org, role="agent", user_id=agent_id)
    assert (await client.post("/v1/canned-responses", json=body, headers=agent)).status_code == 403
    listed = (await client.get("/v1/canned-responses", params={"q": "hel"}, headers=agent)).json()
    assert [i["id"] for i in listed["items"]] == [canned_id]
    other = tokens.headers(organization_id=uuid.uuid4(), role="org_admin")
    assert (await client.get(f"/v1/canned-responses/{canned_id}", headers=other)).status_code == 404
    assert (
        await client.delete(f"/v1/canned-responses/{canned_id}", headers=other)
    ).status_code == 404

    await deliver(app, user_created(org, agent_id, name="Ana Souza"))
    conv = await opened(app, org)
    await deliver(
        app,
        platform_event(
            "pytake.contacts.contact.updated.v1",
            org,
            {
                "contact_id": str(conv["contact_id"]),
                "name": "Maria",
                "phone": None,
                "changed": ["name"],
            },
        ),
    )
    r = await client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"type": "text", "canned_response_id": canned_id},
        headers=agent,
    )
    assert r.status_code == 202, r.text
    assert r.json()["text"] == "Hi Maria, Ana Souza here"
    [requested] = await emitted(app, org, "message.send_requested.v1")
    assert requested["data"]["text"]["body"] == "Hi Maria, Ana Souza here"

    r = await client.patch(
        f"/v1/canned-responses/{canned_id}", json={"title": "Hello"}, headers=admin
    )
    assert (r.status_code, r.json()["title"]) == (200, "Hello")
    assert (
        await client.delete(f"/v1/canned-responses/{canned_id}", headers=admin)
    ).status_code == 204
    r = await client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"type": "text", "canned_response_id": canned_id},
        headers=agent,
    )
    assert r.status_code == 404


async def test_read_marks_unread_once_per_message(app, client, tokens, org):
    customer = Customer(org)
    conv = await opened(app, org, customer, "one")
    await deliver(app, customer.says("two"))
    headers = tokens.headers(organization_id=org, role="agent")
    got = (await client.get(f"/v1/conversations/{conv['id']}", headers=headers)).json()
    assert got["unread_count"] == 2
    unread = await client.get("/v1/conversations", params={"has_unread": "true"}, headers=headers)
    assert [c["id"] for c in unread.json()["items"]] == [str(conv["id"])]
    r = await client.post(f"/v1/conversations/{conv['id']}/read", headers=headers)
    assert r.status_code == 200
    assert (r.json()["marked"], r.json()["conversation"]["unread_count"]) == (2, 0)
    again = await client.post(f"/v1/conversations/{conv['id']}/read", headers=headers)
    assert again.json()["marked"] == 0
    events = await emitted(app, org, "message.read_requested.v1")
    wamids = sorted(m["wamid"] for m in await message_rows(app, org))
    assert sorted(e["data"]["wamid"] for e in events) == wamids
    assert events[0]["data"]["phone_number_id"] == conv["phone_number_id"]
    assert events[0]["data"]["number_id"] == str(conv["number_id"])
    viewer = tokens.headers(organization_id=org, role="viewer")
    assert (
        await client.post(f"/v1/conversations/{conv['id']}/read", headers=viewer)
    ).status_code == 403


async def test_counts_and_filters(app, client, tokens, org):
    convs = [await opened(app, org) for _ in range(4)]
    await set_conversation(app, org, convs[0]["id"], status="pending")
    await set_conversation(app, org, convs[1]["id"], status="resolved", priority="urgent")
    headers = tokens.headers(organization_id=org, role="viewer")
    counts = (await client.get("/v1/conversations/counts", headers=headers)).json()
    assert counts == {"open": 2, "pending": 1, "resolved": 1, "closed": 0, "total": 4}
    r = await client.get(
        "/v1/conversations", params=[("status", "open"), ("status", "pending")], headers=headers
    )
    assert len(r.json()["items"]) == 3
    r = await client.get("/v1/conversations", params={"priority": "urgent"}, headers=headers)
    assert [c["id"] for c in r.json()["items"]] == [str(convs[1]["id"])]
    r = await client.get(
        "/v1/conversations", params={"number_id": str(convs[2]["number_id"])}, headers=headers
    )
    assert [c["id"] for c in r.json()["items"]] == [str(convs[2]["id"])]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await client.get("/v1/conversations", params={"updated_since": future}, headers=headers)
    assert r.json()["items"] == []
    other = tokens.headers(organization_id=uuid.uuid4(), role="viewer")
    assert (await client.get("/v1/conversations/counts", headers=other)).json()["total"] == 0


async def test_metrics_first_response_response_and_resolution(app, client, tokens, org):
    agent_id = uuid.uuid4()
    agent = tokens.headers(organization_id=org, role="agent", user_id=agent_id)
    customer = Customer(org)
    conv = await opened(app, org, customer)
    url = f"/v1/conversations/{conv['id']}"
    r = await client.post(
        f"{url}/messages", json={"type": "text", "text": {"body": "hi"}}, headers=agent
    )
    assert r.status_code == 202
    await deliver(app, customer.says("thanks"))
    await client.post(
        f"{url}/messages", json={"type": "text", "text": {"body": "np"}}, headers=agent
    )
    await client.post(f"{url}/assign", json={"assignee_id": None}, headers=agent)
    await client.post(f"{url}/status", json={"status": "resolved"}, headers=agent)
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    r = await client.get(
        "/v1/conversations/metrics",
        params={"from": start, "to": end},
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["organization"]["first_response"]["count"] == 1
    assert m["organization"]["response"]["count"] == 2
    assert m["organization"]["resolution"]["count"] == 1
    assert m["organization"]["response"]["avg_seconds"] >= 0
    [me] = [a for a in m["agents"] if a["agent_id"] == str(agent_id)]
    assert (me["first_response"]["count"], me["response"]["count"]) == (1, 2)
    bad = await client.get(
        "/v1/conversations/metrics", params={"from": end, "to": start}, headers=agent
    )
    assert bad.status_code == 422
