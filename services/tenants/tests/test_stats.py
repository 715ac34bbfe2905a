import uuid
from datetime import UTC, datetime

from .helpers import again, deliver, event, new_org


def opened(org, conversation, at):
    return event(
        "pytake.conversations.conversation.opened.v1",
        org,
        conversation,
        conversation_id=conversation,
        contact_id=uuid.uuid4(),
        number_id=uuid.uuid4(),
        opened_at=at,
    )


def appended(org, message, direction, at):
    return event(
        "pytake.conversations.message.appended.v1",
        org,
        message,
        message_id=message,
        conversation_id=uuid.uuid4(),
        contact_id=uuid.uuid4(),
        direction=direction,
        type="text",
        created_at=at,
    )


async def test_daily_stats_count_each_fact_once(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    d1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    d2 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    conversation = uuid.uuid4()
    first = opened(org, conversation, d1)
    reopened = opened(org, conversation, d2)  # a resolved conversation reopened
    inbound = appended(org, uuid.uuid4(), "inbound", d1)
    await deliver(app, settings, first, first, again(first), reopened, inbound, again(inbound))
    await deliver(app, settings, appended(org, uuid.uuid4(), "outbound", d2))
    headers = tokens.headers(organization_id=org, role="viewer")
    r = await client.get(
        "/v1/organizations/me/stats",
        params={"from": "2026-03-01", "to": "2026-03-31"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == "2026-03-01" and body["to"] == "2026-03-31"
    assert body["conversations_opened"] == 2
    assert (body["messages_inbound"], body["messages_outbound"], body["messages"]) == (1, 1, 2)
    assert body["days"] == [
        {
            "day": "2026-03-01",
            "conversations_opened": 1,
            "messages_inbound": 1,
            "messages_outbound": 0,
        },
        {
            "day": "2026-03-02",
            "conversations_opened": 1,
            "messages_inbound": 0,
            "messages_outbound": 1,
        },
    ]
    assert body["active_agents"] == 1
    r = await client.get(
        "/v1/organizations/me/stats",
        params={"from": "2026-03-02", "to": "2026-03-02"},
        headers=headers,
    )
    assert r.json()["conversations_opened"] == 1 and r.json()["messages"] == 1


async def test_stats_period_is_validated(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    headers = tokens.headers(organization_id=org)
    for params in (
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": "yesterday"},
    ):
        r = await client.get("/v1/organizations/me/stats", params=params, headers=headers)
        assert r.status_code == 422, params
    r = await client.get("/v1/organizations/me/stats", headers=headers)
    assert r.status_code == 200 and r.json()["conversations_opened"] == 0
    r = await client.get(
        "/v1/organizations/me/stats", headers=tokens.headers(organization_id=uuid.uuid4())
    )
    assert r.status_code == 503 and r.json()["code"] == "organization_pending"
