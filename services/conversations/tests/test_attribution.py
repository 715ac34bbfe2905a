"""Who sent a message: a person or an API client (``sent_by`` + ``sender_type``)."""

import uuid

import pytest

from .support import opened


@pytest.fixture
def org():
    return uuid.uuid4()


async def test_messages_and_notes_name_the_api_client_that_sent_them(app, client, tokens, org):
    conv = await opened(app, org)
    person, integration = uuid.uuid4(), uuid.uuid4()
    by_person = tokens.headers(organization_id=org, role="agent", user_id=person)
    by_client = tokens.headers(
        organization_id=org,
        role="agent",
        client_id=integration,
        scope="messages:send conversations:read conversations:write",
    )
    text = {"type": "text", "text": {"body": "your order shipped"}}
    path = f"/v1/conversations/{conv['id']}"
    sent = await client.post(f"{path}/messages", json=text, headers=by_client)
    assert sent.status_code == 202, sent.text
    assert (sent.json()["sent_by"], sent.json()["sender_type"]) == (str(integration), "api_client")
    note = await client.post(f"{path}/notes", json={"body": "synced"}, headers=by_client)
    assert note.status_code == 201, note.text
    assert note.json()["sender_type"] == "api_client"
    reply = await client.post(f"{path}/messages", json=text, headers=by_person)
    assert (reply.json()["sent_by"], reply.json()["sender_type"]) == (str(person), "user")

    # The history says the same (its fast path writes the JSON itself).
    history = await client.get(f"{path}/messages", headers=by_person)
    assert history.status_code == 200
    senders = {m["id"]: (m["sent_by"], m["sender_type"]) for m in history.json()["items"]}
    assert senders[sent.json()["id"]] == (str(integration), "api_client")
    assert senders[note.json()["id"]] == (str(integration), "api_client")
    assert senders[reply.json()["id"]] == (str(person), "user")
    inbound = [m for m in history.json()["items"] if m["direction"] == "inbound"]
    assert inbound and all(m["sender_type"] is None for m in inbound)


async def test_a_client_without_messages_send_cannot_send(app, client, tokens, org):
    conv = await opened(app, org)
    reader = tokens.headers(
        organization_id=org, role="agent", client_id=uuid.uuid4(), scope="conversations:write"
    )
    text = {"type": "text", "text": {"body": "hi"}}
    r = await client.post(f"/v1/conversations/{conv['id']}/messages", json=text, headers=reader)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert r.json()["required_scope"] == "messages:send"
