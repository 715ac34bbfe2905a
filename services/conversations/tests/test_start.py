"""POST /v1/conversations: writing to a contact first, from the replicas conversations keeps."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pytake_common.ids import contact_id_for

from .support import (
    Customer,
    conversation_rows,
    deliver,
    emitted,
    message_rows,
    platform_event,
    set_conversation,
)

WABA = "waba-1"
BODY = "Hi {{1}}, your order {{2}} ships today."


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
def agent():
    return uuid.uuid4()


def number_event(org, number_id, kind="registered", **data):
    base = {"number_id": str(number_id)}
    if kind == "registered":
        base |= {
            "phone_number_id": "106540352242922",
            "waba_id": WABA,
            "display_phone_number": "15550100",
        }
    return platform_event(f"pytake.whatsapp.number.{kind}.v1", org, base | data)


def template_event(
    org, name="order_update", *, category="UTILITY", status="APPROVED", body=BODY, at=None
):
    event = platform_event(
        "pytake.whatsapp.template.status_changed.v1",
        org,
        {
            "template_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org}:{name}")),
            "number_id": None,
            "waba_id": WABA,
            "name": name,
            "language": "en_US",
            "category": category,
            "status": status,
            "components": [{"type": "BODY", "text": body}],
        },
    )
    return event.model_copy(update={"time": at}) if at else event


def contact_event(org, wa_id, kind="created", *, name="Maria", attributes=None, at=None):
    contact_id = contact_id_for(org, wa_id)
    data = {"contact_id": str(contact_id), "name": name, "phone": "+" + wa_id}
    if kind == "created":
        data |= {"wa_id": wa_id, "user_id": None}
    else:
        data |= {"changed": ["attributes"]}
    if attributes is not None:
        data["attributes"] = attributes
    event = platform_event(f"pytake.contacts.contact.{kind}.v1", org, data)
    return event.model_copy(update={"time": at}) if at else event


class Setup:
    """An organization with one connected number, an approved template and a contact."""

    def __init__(self, app, org):
        self.app = app
        self.org = org
        self.number_id = uuid.uuid4()
        self.wa_id = f"55119{uuid.uuid4().int % 10**8:08d}"
        self.contact_id = contact_id_for(org, self.wa_id)

    async def ready(self, attributes=None):
        await deliver(self.app, number_event(self.org, self.number_id))
        await deliver(self.app, template_event(self.org))
        await deliver(
            self.app,
            contact_event(self.org, self.wa_id, attributes=attributes or {"order": "A-17"}),
        )
        return self

    def customer(self):
        return Customer(self.org, wa_id=self.wa_id, number_id=self.number_id)

    def body(self, **over):
        template = {
            "name": "order_update",
            "language": "en_US",
            "parameters": ["{{contact.name}}", "{{contact.attributes.order}}"],
        }
        return {
            "contact_id": str(self.contact_id),
            "number_id": str(self.number_id),
            "template": template,
        } | over


@pytest.fixture
async def setup(app, org):
    return await Setup(app, org).ready()


def start(client, tokens, org, body, *, role="agent", user_id=None, key=None):
    headers = tokens.headers(organization_id=org, role=role, user_id=user_id)
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/v1/conversations", json=body, headers=headers)


async def test_a_template_opens_a_conversation_with_its_pending_message(
    app, client, tokens, org, agent, setup
):
    r = await start(client, tokens, org, setup.body(), user_id=agent)
    assert r.status_code == 201, r.text
    answer = r.json()
    conv, message = answer["conversation"], answer["message"]
    assert answer["reused"] is False
    assert (conv["contact_id"], conv["number_id"]) == (str(setup.contact_id), str(setup.number_id))
    assert (conv["status"], conv["started_by"], conv["wa_id"]) == ("open", str(agent), setup.wa_id)
    assert conv["previous_conversation_id"] is None
    assert (message["type"], message["status"]) == ("template", "pending")
    # the inbox shows what the customer reads
    assert message["text"] == "Hi Maria, your order A-17 ships today."
    [request] = [e["data"] for e in await emitted(app, org, "message.send_requested.v1")]
    assert (request["to"], request["phone_number_id"], request["type"]) == (
        setup.wa_id,
        "106540352242922",
        "template",
    )
    assert request["payload"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Maria"}, {"type": "text", "text": "A-17"}],
            }
        ],
    }
    [opened] = [e["data"] for e in await emitted(app, org, "conversation.opened.v1")]
    assert (opened["started_by"], opened["conversation_id"]) == (str(agent), conv["id"])


async def test_a_retry_with_the_same_key_answers_the_same_and_sends_once(
    app, client, tokens, org, agent, setup
):
    first = await start(client, tokens, org, setup.body(), user_id=agent, key="k-1")
    again = await start(client, tokens, org, setup.body(), user_id=agent, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(await emitted(app, org, "message.send_requested.v1")) == 1
    assert len(await message_rows(app, org)) == 1
    other = await start(
        client,
        tokens,
        org,
        setup.body(text={"body": "hi"}, template=None),
        user_id=agent,
        key="k-1",
    )
    assert other.status_code == 422  # the key reused with another body


async def test_the_open_conversation_on_the_number_is_reused(app, client, tokens, org, setup):
    await deliver(app, setup.customer().says("hello"))
    [existing] = await conversation_rows(app, org)
    r = await start(client, tokens, org, setup.body(text={"body": "Hi!"}, template=None))
    assert r.status_code == 201, r.text
    assert r.json()["reused"] is True
    assert r.json()["conversation"]["id"] == str(existing["id"])
    assert r.json()["message"]["text"] == "Hi!"
    assert len(await conversation_rows(app, org)) == 1
    assert len(await emitted(app, org, "conversation.opened.v1")) == 1  # the customer's


async def test_after_a_closed_one_a_start_or_a_message_opens_a_new_linked_conversation(
    app, client, tokens, org, setup
):
    customer = setup.customer()
    await deliver(app, customer.says("hello"))
    [first] = await conversation_rows(app, org)
    await set_conversation(app, org, first["id"], status="closed", closed_at=datetime.now(UTC))
    r = await start(client, tokens, org, setup.body())
    assert r.status_code == 201, r.text
    second = r.json()["conversation"]
    assert (r.json()["reused"], second["previous_conversation_id"]) == (False, str(first["id"]))
    assert second["id"] != str(first["id"])
    # the customer's window carried over from the closed conversation
    assert second["last_inbound_at"] is not None

    await set_conversation(
        app, org, uuid.UUID(second["id"]), status="closed", closed_at=datetime.now(UTC)
    )
    await deliver(app, customer.says("again"))
    third = (await conversation_rows(app, org))[-1]
    assert third["status"] == "open"
    assert third["previous_conversation_id"] == uuid.UUID(second["id"])
    links = [
        e["data"]["previous_conversation_id"]
        for e in await emitted(app, org, "conversation.opened.v1")
    ]
    assert links == [None, str(first["id"]), second["id"]]


async def test_text_only_while_the_customer_service_window_is_open(app, client, tokens, org, setup):
    text = setup.body(text={"body": "Hi"}, template=None)
    r = await start(client, tokens, org, text)
    assert (r.status_code, r.json()["code"]) == (422, "outside_customer_service_window")
    assert await conversation_rows(app, org) == []  # nothing opened by a refused start

    await deliver(app, setup.customer().says("hello"))
    [conv] = await conversation_rows(app, org)
    await set_conversation(
        app,
        org,
        conv["id"],
        status="closed",
        last_inbound_at=datetime.now(UTC) - timedelta(hours=2),
    )
    r = await start(client, tokens, org, text)
    assert r.status_code == 201, r.text  # the window (2 h old) is still open

    await set_conversation(
        app,
        org,
        uuid.UUID(r.json()["conversation"]["id"]),
        last_inbound_at=datetime.now(UTC) - timedelta(hours=25),
    )
    r = await start(client, tokens, org, text)
    assert (r.status_code, r.json()["code"]) == (422, "outside_customer_service_window")
    # a template still goes
    assert (await start(client, tokens, org, setup.body())).status_code == 201


async def test_blocked_and_erased_contacts_are_refused(app, client, tokens, org, setup):
    data = {"contact_id": str(setup.contact_id), "reason": None, "blocked_by": str(uuid.uuid4())}
    blocked_at = {"blocked_at": datetime.now(UTC).isoformat()}
    await deliver(app, platform_event("pytake.contacts.contact.blocked.v1", org, data | blocked_at))
    r = await start(client, tokens, org, setup.body())
    assert (r.status_code, r.json()["code"]) == (422, "contact_blocked")

    erased = {"contact_id": str(setup.contact_id), "erased_at": datetime.now(UTC).isoformat()}
    await deliver(app, platform_event("pytake.contacts.contact.erased.v1", org, erased))
    await deliver(app, platform_event("pytake.contacts.contact.erased.v1", org, erased))
    r = await start(client, tokens, org, setup.body())
    assert (r.status_code, r.json()["code"]) == (422, "contact_erased")
    assert await emitted(app, org, "message.send_requested.v1") == []


async def test_marketing_templates_need_consent(app, client, tokens, org, setup):
    await deliver(app, template_event(org, "spring_sale", category="MARKETING", body="Hi {{1}}"))
    body = setup.body(
        template={"name": "spring_sale", "language": "en_US", "parameters": ["{{contact.name}}"]}
    )
    r = await start(client, tokens, org, body)
    assert (r.status_code, r.json()["code"]) == (422, "consent_required")

    def consent(opt_in, at):
        return platform_event(
            "pytake.contacts.contact.consent_changed.v1",
            org,
            {
                "contact_id": str(setup.contact_id),
                "marketing_opt_in": opt_in,
                "source": "form",
                "changed_at": at.isoformat(),
            },
        )

    now = datetime.now(UTC)
    await deliver(app, consent(True, now))
    await deliver(app, consent(False, now - timedelta(minutes=5)))  # older: ignored
    r = await start(client, tokens, org, body)
    assert r.status_code == 201, r.text


async def test_unknown_and_unapproved_templates_are_refused(app, client, tokens, org, setup):
    r = await start(client, tokens, org, setup.body(template={"name": "nope", "language": "en_US"}))
    assert (r.status_code, r.json()["code"]) == (422, "template_not_found")

    await deliver(app, template_event(org, status="PAUSED"))
    r = await start(client, tokens, org, setup.body())
    assert (r.status_code, r.json()["code"]) == (422, "template_not_approved")

    await deliver(app, template_event(org, status="APPROVED"))
    r = await start(client, tokens, org, setup.body())
    assert r.status_code == 201, r.text


async def test_a_missing_parameter_is_named_unless_it_has_a_default(
    app, client, tokens, org, setup
):
    params = ["{{contact.name}}", "{{contact.attributes.coupon}}"]
    body = setup.body(template={"name": "order_update", "language": "en_US", "parameters": params})
    r = await start(client, tokens, org, body)
    assert (r.status_code, r.json()["code"]) == (422, "template_parameter_missing")
    assert r.json()["parameter"] == "body.2"
    assert r.json()["placeholders"] == ["contact.attributes.coupon"]

    params[1] = {"value": "{{contact.attributes.coupon}}", "default": "your order"}
    r = await start(client, tokens, org, body)
    assert r.status_code == 201, r.text
    assert r.json()["message"]["text"] == "Hi Maria, your order your order ships today."

    short = setup.body(template={"name": "order_update", "language": "en_US", "parameters": []})
    r = await start(client, tokens, org, short)
    assert (r.status_code, r.json()["code"]) == (422, "template_parameter_count")


async def test_attributes_follow_the_newest_contact_event(app, client, tokens, org, setup):
    now = datetime.now(UTC)
    update = contact_event(org, setup.wa_id, "updated", attributes={"order": "B-2"}, at=now)
    stale = contact_event(
        org, setup.wa_id, "updated", attributes={"order": "OLD"}, at=now - timedelta(hours=1)
    )
    for event in (update, update, stale):
        await deliver(app, event)
    r = await start(client, tokens, org, setup.body())
    assert r.json()["message"]["text"] == "Hi Maria, your order B-2 ships today."


async def test_viewers_cannot_start_and_other_organizations_ids_are_not_found(
    app, client, tokens, org, setup
):
    r = await start(client, tokens, org, setup.body(), role="viewer")
    assert r.status_code == 403
    other = await Setup(app, uuid.uuid4()).ready()
    for over in ({"contact_id": str(other.contact_id)}, {"number_id": str(other.number_id)}):
        r = await start(client, tokens, org, setup.body(**over))
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await conversation_rows(app, org) == []


async def test_removed_and_disconnected_numbers(app, client, tokens, org, setup):
    failed = {"reason": "token expired", "retryable": False}
    failed["failed_at"] = datetime.now(UTC).isoformat()
    await deliver(app, number_event(org, setup.number_id, "disconnected", **failed))
    r = await start(client, tokens, org, setup.body())
    assert (r.status_code, r.json()["code"]) == (422, "number_disconnected")
    removed = {"phone_number_id": "106540352242922"}
    await deliver(app, number_event(org, setup.number_id, "removed", **removed))
    # a late "registered" brings nothing back
    await deliver(app, number_event(org, setup.number_id))
    r = await start(client, tokens, org, setup.body())
    assert r.status_code == 404


async def test_two_starts_at_once_share_one_conversation(app, client, tokens, org, setup):
    answers = await asyncio.gather(*(start(client, tokens, org, setup.body()) for _ in range(2)))
    assert [a.status_code for a in answers] == [201, 201]
    assert sorted(a.json()["reused"] for a in answers) == [False, True]
    assert len({a.json()["conversation"]["id"] for a in answers}) == 1
    assert len(await conversation_rows(app, org)) == 1
    assert len(await emitted(app, org, "message.send_requested.v1")) == 2


async def test_a_contact_created_again_after_erasure_can_be_written_to(
    app, client, tokens, org, setup
):
    at = datetime.now(UTC) - timedelta(minutes=1)
    erased = {"contact_id": str(setup.contact_id), "erased_at": at.isoformat()}
    await deliver(app, platform_event("pytake.contacts.contact.erased.v1", org, erased))
    # the customer wrote again (or was imported): contacts creates the contact anew
    await deliver(app, contact_event(org, setup.wa_id, attributes={"order": "C-3"}))
    r = await start(client, tokens, org, setup.body())
    assert r.status_code == 201, r.text
    assert r.json()["message"]["text"] == "Hi Maria, your order C-3 ships today."
