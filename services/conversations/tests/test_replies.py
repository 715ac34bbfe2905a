"""Agent replies: pending + send_requested, Idempotency-Key, the 24-hour window, tenancy."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from .helpers import Customer, conversation_rows, deliver, emitted, message_rows, set_conversation


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
async def conversation(app, org):
    customer = Customer(org)
    inbound = customer.says("where is my order?")
    await deliver(app, inbound)
    [conv] = await conversation_rows(app, org)
    conv["inbound"] = inbound
    return conv


def reply(text="On its way!", **extra):
    return {"type": "text", "text": {"body": text}, **extra}


async def test_reply_is_stored_pending_and_requests_a_send(app, client, tokens, org, conversation):
    agent = uuid.uuid4()
    headers = tokens.headers(organization_id=org, role="agent", user_id=agent)
    inbound_id = conversation["inbound"].data["message_id"]
    r = await client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json=reply("On its way!", reply_to=inbound_id),
        headers={**headers, "Idempotency-Key": "k-1"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["direction"] == "outbound"
    assert body["status"] == "pending"
    assert body["text"] == "On its way!"
    assert body["type"] == "text"
    assert body["sent_by"] == str(agent)
    assert body["wamid"] is None
    assert body["context_wamid"] == conversation["inbound"].data["wamid"]

    stored = [m for m in await message_rows(app, org) if m["direction"] == "outbound"]
    assert [(str(m["id"]), m["status"], m["sent_by"]) for m in stored] == [
        (body["id"], "pending", agent)
    ]

    [requested] = await emitted(app, org, "message.send_requested.v1")
    assert requested["subject"] == str(conversation["id"])  # ordered per conversation
    assert requested["source"] == "pytake/conversations"
    assert requested["data"] == {
        "message_id": body["id"],
        "organization_id": str(org),
        "conversation_id": str(conversation["id"]),
        "number_id": str(conversation["number_id"]),
        "phone_number_id": conversation["phone_number_id"],
        "to": conversation["wa_id"],
        "type": "text",
        "text": {"body": "On its way!", "preview_url": False},
        "context_wamid": conversation["inbound"].data["wamid"],
        "requested_by": str(agent),
        "payload": None,
        "priority": "interactive",
        "campaign_id": None,
        "recipient_id": None,
    }
    appended = (await emitted(app, org, "message.appended.v1"))[-1]
    assert appended["data"]["message_id"] == body["id"]
    assert appended["data"]["direction"] == "outbound"
    assert (appended["data"]["sender_type"], appended["data"]["sender_id"]) == ("user", str(agent))
    assert appended["data"]["text"] == "On its way!"

    r = await client.get(f"/v1/conversations/{conversation['id']}/messages", headers=headers)
    assert [m["direction"] for m in r.json()["items"]] == ["inbound", "outbound"]
    assert r.json()["items"][1] == body


async def test_idempotency_key_retry_returns_the_first_answer_and_sends_once(
    app, client, tokens, org, conversation
):
    headers = {
        **tokens.headers(organization_id=org, role="agent", user_id=uuid.uuid4()),
        "Idempotency-Key": "retry-me",
    }
    url = f"/v1/conversations/{conversation['id']}/messages"
    first = await client.post(url, json=reply("hi"), headers=headers)
    second = await client.post(
        url, json={"type": "text", "text": {"body": "hi", "preview_url": False}}, headers=headers
    )
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert len(await emitted(app, org, "message.send_requested.v1")) == 1
    assert len([m for m in await message_rows(app, org) if m["direction"] == "outbound"]) == 1

    different = await client.post(url, json=reply("something else"), headers=headers)
    assert different.status_code == 422
    assert different.headers["content-type"].startswith("application/problem+json")
    assert len(await emitted(app, org, "message.send_requested.v1")) == 1

    # Without a key every call is a new message.
    plain = tokens.headers(organization_id=org, role="agent")
    for _ in range(2):
        assert (await client.post(url, json=reply("hi"), headers=plain)).status_code == 202
    assert len(await emitted(app, org, "message.send_requested.v1")) == 3


async def test_outside_the_24_hour_window_needs_a_template(app, client, tokens, org, conversation):
    await set_conversation(
        app,
        org,
        conversation["id"],
        last_inbound_at=datetime.now(UTC) - timedelta(hours=24, seconds=5),
    )
    headers = {**tokens.headers(organization_id=org, role="agent"), "Idempotency-Key": "w-1"}
    url = f"/v1/conversations/{conversation['id']}/messages"
    r = await client.post(url, json=reply(), headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "outside_customer_service_window"
    assert "template" in problem["detail"]
    assert await emitted(app, org, "message.send_requested.v1") == []
    # The failed attempt did not burn the key: once the customer writes, the retry works.
    await deliver(app, Customer(org, number_id=conversation["number_id"]).says("hello again"))
    r = await client.post(url, json=reply(), headers=headers)
    assert r.status_code == 202


async def test_window_closes_exactly_24_hours_after_the_last_customer_message(
    app, client, tokens, org, conversation
):
    r = await client.get(
        f"/v1/conversations/{conversation['id']}",
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    conv = r.json()
    assert datetime.fromisoformat(conv["service_window_expires_at"]) == (
        datetime.fromisoformat(conv["last_inbound_at"]) + timedelta(hours=24)
    )
    await set_conversation(
        app,
        org,
        conversation["id"],
        last_inbound_at=datetime.now(UTC) - timedelta(hours=23, minutes=59),
    )
    r = await client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json=reply(),
        headers=tokens.headers(organization_id=org, role="agent"),
    )
    assert r.status_code == 202


async def test_closed_conversation_refuses_replies(app, client, tokens, org, conversation):
    await set_conversation(app, org, conversation["id"], status="closed")
    r = await client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json=reply(),
        headers=tokens.headers(organization_id=org, role="agent"),
    )
    assert r.status_code == 409
    assert r.json()["code"] == "conversation_closed"


async def test_viewer_cannot_send_and_bad_bodies_are_refused(
    app, client, tokens, org, conversation
):
    url = f"/v1/conversations/{conversation['id']}/messages"
    r = await client.post(
        url, json=reply(), headers=tokens.headers(organization_id=org, role="viewer")
    )
    assert r.status_code == 403
    agent = tokens.headers(organization_id=org, role="agent")
    for bad in [
        reply(""),
        reply("   "),
        reply("x" * 4097),
        {"type": "image", "text": {"body": "x"}},
        {"type": "text"},
        reply(reply_to=str(uuid.uuid4())),
    ]:
        r = await client.post(url, json=bad, headers=agent)
        assert r.status_code == 422, bad
    assert (await client.post(url, json=reply("x" * 4096), headers=agent)).status_code == 202
    r = await client.post(url, json=reply(), headers={**agent, "Idempotency-Key": "k" * 201})
    assert r.status_code == 422
    assert len(await emitted(app, org, "message.send_requested.v1")) == 1


async def test_other_organization_gets_404_on_every_route(app, client, tokens, org, conversation):
    intruder = tokens.headers(organization_id=uuid.uuid4(), role="org_admin")
    base = f"/v1/conversations/{conversation['id']}"
    for r in [
        await client.get(base, headers=intruder),
        await client.get(f"{base}/messages", headers=intruder),
        await client.post(
            f"{base}/messages", json=reply(), headers={**intruder, "Idempotency-Key": "x"}
        ),
    ]:
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "not_found"
    r = await client.get("/v1/conversations", headers=intruder)
    assert r.json() == {"items": [], "next_cursor": None}
    assert (await client.get(base)).status_code == 401
    assert await emitted(app, org, "message.send_requested.v1") == []


async def test_lists_paginate_in_a_stable_order(app, client, tokens, org):
    number = uuid.uuid4()
    customers = [Customer(org, f"551198765430{i}", number_id=number) for i in range(5)]
    for c in customers:
        await deliver(app, c.says("hi"))
    viewer = tokens.headers(organization_id=org, role="viewer")

    async def walk(url, **params):
        seen, cursor = [], None
        while True:
            query = {**params, "limit": 2} | ({"cursor": cursor} if cursor else {})
            r = await client.get(url, params=query, headers=viewer)
            assert r.status_code == 200, r.text
            seen += r.json()["items"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return seen

    convs = await walk("/v1/conversations")
    assert len({c["id"] for c in convs}) == 5
    keys = [(c["last_message_at"], c["id"]) for c in convs]
    assert keys == sorted(keys, reverse=True)
    # The most recently active conversation comes first.
    await deliver(app, customers[0].says("me again"))
    r = await client.get("/v1/conversations", params={"limit": 1}, headers=viewer)
    assert r.json()["items"][0]["contact_id"] == str(customers[0].contact_id)

    first_id = r.json()["items"][0]["id"]
    await set_conversation(app, org, uuid.UUID(first_id), status="resolved")
    r = await client.get("/v1/conversations", params={"status": "resolved"}, headers=viewer)
    assert [c["id"] for c in r.json()["items"]] == [first_id]
    r = await client.get(
        "/v1/conversations", params=[("status", "open"), ("status", "pending")], headers=viewer
    )
    assert len(r.json()["items"]) == 4
    r = await client.get("/v1/conversations", params={"status": "bogus"}, headers=viewer)
    assert r.status_code == 422

    agent = tokens.headers(organization_id=org, role="agent")
    for i in range(4):
        r = await client.post(
            f"/v1/conversations/{first_id}/messages", json=reply(f"r{i}"), headers=agent
        )
        assert r.status_code == 202
    history = await walk(f"/v1/conversations/{first_id}/messages")
    assert [m["text"] for m in history] == ["hi", "me again", "r0", "r1", "r2", "r3"]
    r = await client.get(
        f"/v1/conversations/{first_id}/messages", params={"cursor": "%%"}, headers=viewer
    )
    assert r.status_code == 422
