"""The public webhook contract: schemas committed, payloads valid against them, no secrets."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from pytake_integrations import contract, public
from pytake_integrations.handlers import HANDLERS

from .helpers import deliver, internal, make_endpoint, rows

REPO = Path(__file__).resolve().parents[3]


def test_committed_schemas_match_the_models():
    committed = {p.name: p.read_text() for p in (REPO / "schemas" / "webhooks").glob("*.json")}
    generated = {name: contract.dump(s) for name, s in contract.schemas().items()}
    assert committed == generated, "run `make schemas`"


def test_docs_list_every_public_type_and_its_schema():
    doc = (REPO / "docs" / "webhooks.md").read_text()
    for name in public.CATALOG:
        assert f"`{name}`" in doc, name
        assert f"schemas/webhooks/{name}.v1.json" in doc, name


def test_no_public_field_can_carry_a_secret():
    for model in public.CATALOG.values():
        for field in model.model_fields:
            assert not any(w in field for w in ("secret", "token", "password", "key")), field


NOW = datetime.now(UTC)
CONTACT, CONVERSATION, MESSAGE, NUMBER = (uuid.uuid4() for _ in range(4))
SAMPLES = {
    "pytake.conversations.message.appended.v1": {
        "message_id": MESSAGE,
        "conversation_id": CONVERSATION,
        "contact_id": CONTACT,
        "direction": "inbound",
        "type": "text",
        "created_at": NOW,
    },
    "pytake.conversations.message.status_changed.v1": {
        "message_id": MESSAGE,
        "conversation_id": CONVERSATION,
        "status": "failed",
        "error_code": 131026,
        "error_detail": "Message undeliverable",
        "at": NOW,
    },
    "pytake.conversations.conversation.opened.v1": {
        "conversation_id": CONVERSATION,
        "contact_id": CONTACT,
        "number_id": NUMBER,
        "opened_at": NOW,
    },
    "pytake.conversations.conversation.assigned.v1": {
        "conversation_id": CONVERSATION,
        "contact_id": CONTACT,
        "assignee_id": uuid.uuid4(),
        "department_id": None,
        "assigned_by": None,
        "at": NOW,
    },
    "pytake.conversations.conversation.status_changed.v1": {
        "conversation_id": CONVERSATION,
        "contact_id": CONTACT,
        "old_status": "open",
        "new_status": "resolved",
        "changed_by": uuid.uuid4(),
        "at": NOW,
    },
    "pytake.contacts.contact.created.v1": {
        "contact_id": CONTACT,
        "wa_id": "5511999990000",
        "user_id": None,
        "name": "Ana",
        "phone": "+5511999990000",
    },
    "pytake.contacts.contact.updated.v1": {
        "contact_id": CONTACT,
        "name": "Ana B.",
        "phone": "+5511999990000",
        "changed": ["name"],
    },
}


def test_every_handled_internal_type_has_a_sample():
    assert set(SAMPLES) == set(HANDLERS)


async def test_each_internal_event_becomes_a_valid_public_payload(app, settings, client, tokens):
    org = uuid.uuid4()
    endpoint = await make_endpoint(
        client, tokens, org, "https://hooks.example.com/", sorted(public.EVENT_TYPES)
    )
    events = [internal(t, org, uuid.uuid4(), **data) for t, data in SAMPLES.items()]
    await deliver(app, settings, *events)
    queued = await rows(app, endpoint["id"])
    assert {r["event_type"] for r in queued} == {
        "message.received",
        "message.failed",
        "conversation.opened",
        "conversation.assigned",
        "conversation.status_changed",
        "contact.created",
        "contact.updated",
    }
    for row in queued:
        body = json.loads(row["body"])
        schema = json.loads(
            (REPO / "schemas" / "webhooks" / f"{row['event_type']}.v1.json").read_text()
        )
        jsonschema.validate(body, schema)
        assert row["ordering_key"] == str(
            CONTACT if row["event_type"].startswith("contact.") else CONVERSATION
        )
    failed = next(json.loads(r["body"]) for r in queued if r["event_type"] == "message.failed")
    assert failed["data"]["error_code"] == 131026


@pytest.mark.parametrize("status", ["sent", "delivered", "read"])
async def test_status_changes_map_to_their_public_types(app, settings, client, tokens, status):
    org = uuid.uuid4()
    endpoint = await make_endpoint(
        client, tokens, org, "https://h.example.com/", [f"message.{status}"]
    )
    data = {**SAMPLES["pytake.conversations.message.status_changed.v1"], "status": status}
    await deliver(
        app,
        settings,
        internal("pytake.conversations.message.status_changed.v1", org, MESSAGE, **data),
    )
    [row] = await rows(app, endpoint["id"])
    body = json.loads(row["body"])
    assert body["type"] == f"message.{status}"
    assert body["data"]["error_code"] is None


async def test_message_received_carries_the_text_and_the_reply_when_the_event_has_them(
    app, settings, client, tokens
):
    """Tolerant reader: conversations' event gained optional ``text`` and ``reply``
    (CONTRACT.md A); an event without them still queues a valid payload (nulls)."""
    org = uuid.uuid4()
    endpoint = await make_endpoint(client, tokens, org, "https://hooks.example.com/")
    base = SAMPLES["pytake.conversations.message.appended.v1"]
    variants = [
        {},  # an older producer
        {"text": "Olá, meu pedido?"},
        {
            "type": "interactive",
            "text": "Falar com atendente",
            "reply": {"kind": "button", "id": "agent", "title": "Falar com atendente"},
        },
        {"type": "interactive", "text": "x", "reply": {"kind": "carousel", "id": "1"}},
    ]
    events = [
        internal(
            "pytake.conversations.message.appended.v1",
            org,
            message,
            **{**base, "message_id": message, **extra},
        )
        for extra, message in ((v, uuid.uuid4()) for v in variants)
    ]
    await deliver(app, settings, *events)
    schema = json.loads((REPO / "schemas/webhooks/message.received.v1.json").read_text())
    bodies = [json.loads(r["body"]) for r in await rows(app, endpoint["id"])]
    for body in bodies:
        jsonschema.validate(body, schema)
    got = [(b["data"]["text"], b["data"]["reply"]) for b in bodies]
    assert got == [
        (None, None),
        ("Olá, meu pedido?", None),
        ("Falar com atendente", {"kind": "button", "id": "agent", "title": "Falar com atendente"}),
        ("x", None),  # a reply shape v1 does not know is left out, the message is not
    ]
