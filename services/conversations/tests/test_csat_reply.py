"""A customer's rating from automation's CSAT list answers the survey of a resolved
conversation without reopening it; any other message reopens it as before."""

import uuid

import pytest

from .helpers import Customer, conversation_rows, deliver, emitted, opened


@pytest.fixture
def org():
    return uuid.uuid4()


def chooses(customer: Customer, row_id: str, title: str):
    event = customer.says(title)
    event.data["type"] = "interactive"
    event.data["content"] = {
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": row_id, "title": title}},
    }
    return event


async def test_a_csat_rating_keeps_the_conversation_resolved(app, client, tokens, org):
    agent = tokens.headers(organization_id=org, role="agent", user_id=uuid.uuid4())
    customer = Customer(org)
    conv = await opened(app, org, customer)
    r = await client.post(
        f"/v1/conversations/{conv['id']}/status", json={"status": "resolved"}, headers=agent
    )
    assert r.status_code == 200, r.text
    rating = chooses(customer, f"csat:{uuid.uuid4()}:5", "5 - Excellent")
    await deliver(app, rating)
    [row] = await conversation_rows(app, org)
    assert (row["status"], row["unread_count"]) == ("resolved", 2)
    [appended] = [
        e["data"] for e in await emitted(app, org, "message.appended.v1") if e["data"]["reply"]
    ]
    assert appended["reply"]["id"].startswith("csat:")
    assert len(await emitted(app, org, "conversation.opened.v1")) == 1  # the first opening only

    # Another list's choice (a flow's) reopens it like any message.
    await deliver(app, rating)  # the same delivery again changes nothing
    await deliver(app, chooses(customer, "menu:billing", "Billing"))
    [row] = await conversation_rows(app, org)
    assert row["status"] == "open"
    assert len(await emitted(app, org, "conversation.opened.v1")) == 2
