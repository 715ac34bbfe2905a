"""Lifecycle: the transition table, snooze, priority, inbound wake-ups, closed stays closed."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pytake_conversations.domain import TRANSITIONS
from pytake_conversations.inbox import wake_snoozed

from .helpers import Customer, conversation_rows, deliver, emitted, opened, set_conversation


@pytest.fixture
def org():
    return uuid.uuid4()


def move(client, tokens, org, conv_id, role="agent", user_id=None, **body):
    return client.post(
        f"/v1/conversations/{conv_id}/status",
        json=body,
        headers=tokens.headers(organization_id=org, role=role, user_id=user_id),
    )


async def test_open_pending_resolved_closed_each_emit_status_changed(app, client, tokens, org):
    conv = await opened(app, org)
    agent = uuid.uuid4()
    for new in ("pending", "resolved", "closed"):
        r = await move(client, tokens, org, conv["id"], user_id=agent, status=new)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == new
    changes = await emitted(app, org, "conversation.status_changed.v1")
    assert [
        (e["data"]["old_status"], e["data"]["new_status"], e["data"]["changed_by"]) for e in changes
    ] == [
        ("open", "pending", str(agent)),
        ("pending", "resolved", str(agent)),
        ("resolved", "closed", str(agent)),
    ]
    assert changes[0]["data"]["contact_id"] == str(conv["contact_id"])
    [row] = await conversation_rows(app, org)
    assert row["resolved_at"] is not None and row["closed_at"] is not None


@pytest.mark.parametrize(
    ("start", "target"), [("closed", "open"), ("resolved", "pending"), ("closed", "closed")]
)
async def test_transitions_outside_the_table_are_409(app, client, tokens, org, start, target):
    conv = await opened(app, org)
    await set_conversation(app, org, conv["id"], status=start)
    r = await move(client, tokens, org, conv["id"], status=target)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "invalid_transition"
    assert r.json()["allowed"] == sorted(TRANSITIONS[start] - {start})
    assert await emitted(app, org, "conversation.status_changed.v1") == []


async def test_same_status_is_a_no_op(app, client, tokens, org):
    conv = await opened(app, org)
    r = await move(client, tokens, org, conv["id"], status="open")
    assert r.status_code == 200
    assert await emitted(app, org, "conversation.status_changed.v1") == []


async def test_snooze_wakes_on_time_and_the_status_call_can_set_priority(app, client, tokens, org):
    conv = await opened(app, org)
    until = datetime.now(UTC) + timedelta(hours=2)
    r = await move(
        client,
        tokens,
        org,
        conv["id"],
        status="pending",
        snooze_until=until.isoformat(),
        priority="urgent",
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["priority"]) == ("pending", "urgent")
    assert datetime.fromisoformat(r.json()["snoozed_until"]) == until
    assert await wake_snoozed(app.state.db) == 0  # not yet
    await set_conversation(app, org, conv["id"], snoozed_until=datetime.now(UTC) - timedelta(1))
    assert await wake_snoozed(app.state.db) >= 1
    [row] = await conversation_rows(app, org)
    assert (row["status"], row["snoozed_until"]) == ("open", None)
    woke = (await emitted(app, org, "conversation.status_changed.v1"))[-1]["data"]
    assert (woke["old_status"], woke["new_status"], woke["changed_by"]) == (
        "pending",
        "open",
        None,
    )


async def test_snooze_needs_pending_and_a_future_time(app, client, tokens, org):
    conv = await opened(app, org)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert (
        await move(client, tokens, org, conv["id"], status="pending", snooze_until=past)
    ).status_code == 422
    assert (
        await move(client, tokens, org, conv["id"], status="resolved", snooze_until=future)
    ).status_code == 422


async def test_inbound_wakes_a_snoozed_conversation(app, client, tokens, org):
    customer = Customer(org)
    conv = await opened(app, org, customer)
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await move(client, tokens, org, conv["id"], status="pending", snooze_until=until)
    await deliver(app, customer.says("any news?"))
    [row] = await conversation_rows(app, org)
    assert (row["id"], row["status"], row["snoozed_until"]) == (conv["id"], "open", None)


async def test_closed_stays_closed_and_the_next_inbound_opens_a_new_one(app, client, tokens, org):
    customer = Customer(org)
    conv = await opened(app, org, customer)
    await move(client, tokens, org, conv["id"], status="closed")
    await deliver(app, customer.says("hello again"))
    rows = await conversation_rows(app, org)
    assert [(r["id"] == conv["id"], r["status"]) for r in rows] == [
        (True, "closed"),
        (False, "open"),
    ]


async def test_priority_route_viewer_and_other_organizations(app, client, tokens, org):
    conv = await opened(app, org)
    url = f"/v1/conversations/{conv['id']}/priority"
    agent = tokens.headers(organization_id=org, role="agent")
    r = await client.post(url, json={"priority": "high"}, headers=agent)
    assert (r.status_code, r.json()["priority"]) == (200, "high")
    assert (await client.post(url, json={"priority": "mega"}, headers=agent)).status_code == 422
    viewer = tokens.headers(organization_id=org, role="viewer")
    assert (await client.post(url, json={"priority": "low"}, headers=viewer)).status_code == 403
    assert (
        await move(client, tokens, org, conv["id"], role="viewer", status="closed")
    ).status_code == 403
    stranger = uuid.uuid4()
    other = tokens.headers(organization_id=stranger, role="org_admin")
    assert (await client.post(url, json={"priority": "low"}, headers=other)).status_code == 404
    assert (await move(client, tokens, stranger, conv["id"], status="closed")).status_code == 404
    assert (await client.get(f"/v1/conversations/{conv['id']}", headers=other)).status_code == 404
