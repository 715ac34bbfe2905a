"""Outbound types, the block list, suspension and plan limits, private notes, history paging."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pytake_common.errors import PlanLimitExceeded
from pytake_common.event_types import CONTACTS_CONTACT_BLOCKED_V1, CONTACTS_CONTACT_UNBLOCKED_V1

from .support import (
    deliver,
    emitted,
    message_rows,
    opened,
    platform_event,
    set_conversation,
)


class Directory:
    """Stands in for pytake_common's OrganizationDirectory (same API) with fixed answers."""

    def __init__(self, suspended=(), limits=None):
        self.suspended = set(suspended)
        self.limits = limits or {}
        self.checked = []

    def is_suspended(self, org):
        return org in self.suspended

    def limit(self, org, name):
        return self.limits.get(name)

    async def check_limit(self, org, name, used):
        self.checked.append((name, used))
        if used >= self.limits[name]:
            raise PlanLimitExceeded(name, self.limits[name], used)


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
async def conv(app, org):
    return await opened(app, org)


def post(client, tokens, org, conv_id, body, path="messages", role="agent"):
    return client.post(
        f"/v1/conversations/{conv_id}/{path}",
        json=body,
        headers=tokens.headers(organization_id=org, role=role),
    )


async def last_request(app, org):
    return (await emitted(app, org, "message.send_requested.v1"))[-1]["data"]


async def test_template_goes_out_of_the_window_but_free_form_does_not(
    app, client, tokens, org, conv
):
    await set_conversation(
        app, org, conv["id"], last_inbound_at=datetime.now(UTC) - timedelta(hours=30)
    )
    r = await post(client, tokens, org, conv["id"], {"type": "text", "text": {"body": "hi"}})
    assert (r.status_code, r.json()["code"]) == (422, "outside_customer_service_window")
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}]
    template = {"name": "order_update", "language": "pt_BR", "components": components}
    r = await post(client, tokens, org, conv["id"], {"type": "template", "template": template})
    assert r.status_code == 202, r.text
    assert (r.json()["type"], r.json()["text"]) == ("template", "order_update")
    data = await last_request(app, org)
    assert data["type"] == "template"
    assert data["payload"] == {
        "name": "order_update",
        "language": {"code": "pt_BR"},
        "components": components,
    }
    assert data["text"] == {"body": "", "preview_url": False}


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (
            {"type": "image", "image": {"link": "https://cdn.example/a.jpg", "caption": "a"}},
            {"link": "https://cdn.example/a.jpg", "caption": "a"},
        ),
        (
            {"type": "document", "document": {"media_id": "99", "filename": "inv.pdf"}},
            {"id": "99", "filename": "inv.pdf"},
        ),
        ({"type": "sticker", "sticker": {"media_id": "7"}}, {"id": "7"}),
        (
            {"type": "location", "location": {"latitude": -23.5, "longitude": -46.6, "name": "HQ"}},
            {"latitude": -23.5, "longitude": -46.6, "name": "HQ"},
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "Pick one"},
                    "action": {
                        "buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]
                    },
                },
            },
            {
                "type": "button",
                "body": {"text": "Pick one"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]},
            },
        ),
    ],
)
async def test_rich_types_carry_metas_inner_object(app, client, tokens, org, conv, body, payload):
    r = await post(client, tokens, org, conv["id"], body)
    assert r.status_code == 202, r.text
    data = await last_request(app, org)
    assert (data["type"], data["payload"]) == (body["type"], payload)
    stored = next(m for m in await message_rows(app, org) if str(m["id"]) == r.json()["id"])
    assert stored["content"] == {"type": body["type"], body["type"]: payload}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "image", "image": {"caption": "no source"}},
        {"type": "image", "image": {"link": "https://x/a.jpg", "media_id": "1"}},
        {"type": "audio", "audio": {"media_id": "1", "caption": "no"}},
        {"type": "image", "text": {"body": "wrong object"}},
        {"type": "template", "template": {"name": "Bad Name", "language": "en"}},
        {"type": "interactive", "interactive": {"type": "carousel", "action": {}}},
        {"type": "location", "location": {"latitude": 91, "longitude": 0}},
    ],
)
async def test_malformed_rich_messages_are_422(client, tokens, org, conv, body):
    r = await post(client, tokens, org, conv["id"], body)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input")


async def test_reaction_names_our_message_or_its_wamid(app, client, tokens, org, conv):
    [inbound] = await message_rows(app, org)
    for ref in (str(inbound["id"]), inbound["wamid"]):
        body = {"type": "reaction", "reaction": {"message_id": ref, "emoji": "👍"}}
        r = await post(client, tokens, org, conv["id"], body)
        assert r.status_code == 202, r.text
        assert (await last_request(app, org))["payload"] == {
            "message_id": inbound["wamid"],
            "emoji": "👍",
        }
    body = {"type": "reaction", "reaction": {"message_id": "wamid.unknown", "emoji": "👍"}}
    r = await post(client, tokens, org, conv["id"], body)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_reply_to")


async def test_blocked_contact_refuses_sends_until_unblocked(app, client, tokens, org, conv):
    contact = str(conv["contact_id"])
    at = datetime.now(UTC)
    blocked = platform_event(
        CONTACTS_CONTACT_BLOCKED_V1,
        org,
        {"contact_id": contact, "reason": "spam", "blocked_at": at.isoformat(), "blocked_by": None},
    )
    await deliver(app, blocked)
    await deliver(app, blocked)  # the same event twice changes nothing more
    text = {"type": "text", "text": {"body": "hi"}}
    r = await post(client, tokens, org, conv["id"], text)
    assert (r.status_code, r.json()["code"]) == (422, "contact_blocked")
    unblocked = platform_event(
        CONTACTS_CONTACT_UNBLOCKED_V1,
        org,
        {
            "contact_id": contact,
            "unblocked_at": (at + timedelta(1)).isoformat(),
            "unblocked_by": None,
        },
    )
    await deliver(app, unblocked)
    await deliver(app, blocked)  # a late, older "blocked" does not win
    assert (await post(client, tokens, org, conv["id"], text)).status_code == 202


async def test_suspended_organization_and_monthly_limit(app, client, tokens, org, conv):
    text = {"type": "text", "text": {"body": "hi"}}
    app.state.organizations = Directory(suspended={org})
    r = await post(client, tokens, org, conv["id"], text)
    assert (r.status_code, r.json()["code"]) == (403, "organization_suspended")
    directory = Directory(limits={"monthly_business_messages": 1})
    app.state.organizations = directory
    assert (await post(client, tokens, org, conv["id"], text)).status_code == 202
    r = await post(client, tokens, org, conv["id"], text)
    assert (r.status_code, r.json()["code"]) == (402, "plan_limit_exceeded")
    assert directory.checked == [("monthly_business_messages", 0), ("monthly_business_messages", 1)]
    # notes are never business messages
    note = await post(client, tokens, org, conv["id"], {"body": "vip"}, path="notes")
    assert note.status_code == 201


async def test_notes_are_stored_never_sent_and_readable_by_viewers(app, client, tokens, org, conv):
    before = len(await emitted(app, org))
    headers = {**tokens.headers(organization_id=org, role="agent"), "Idempotency-Key": "n1"}
    url = f"/v1/conversations/{conv['id']}/notes"
    r = await client.post(url, json={"body": "customer is a VIP"}, headers=headers)
    again = await client.post(url, json={"body": "customer is a VIP"}, headers=headers)
    assert r.status_code == again.status_code == 201
    assert r.json() == again.json()
    assert (r.json()["direction"], r.json()["status"]) == ("note", "internal")
    assert len(await emitted(app, org)) == before  # nothing goes to Kafka, nothing is sent
    viewer = tokens.headers(organization_id=org, role="viewer")
    items = (await client.get(f"/v1/conversations/{conv['id']}/messages", headers=viewer)).json()
    assert [m["direction"] for m in items["items"]] == ["inbound", "note"]
    assert (await client.post(url, json={"body": "x"}, headers=viewer)).status_code == 403
    other = tokens.headers(organization_id=uuid.uuid4(), role="agent")
    assert (await client.post(url, json={"body": "x"}, headers=other)).status_code == 404


async def test_history_pages_both_ways(app, client, tokens, org, conv):
    headers = tokens.headers(organization_id=org, role="agent")
    for i in range(5):
        await post(client, tokens, org, conv["id"], {"type": "text", "text": {"body": f"m{i}"}})
    url = f"/v1/conversations/{conv['id']}/messages"
    latest = (await client.get(url, params={"latest": "true", "limit": 2}, headers=headers)).json()
    assert [m["text"] for m in latest["items"]] == ["m3", "m4"]
    assert latest["has_more"] is True
    older = (
        await client.get(
            url, params={"before": latest["items"][0]["id"], "limit": 10}, headers=headers
        )
    ).json()
    assert [m["text"] for m in older["items"]] == ["hello", "m0", "m1", "m2"]
    assert older["has_more"] is False
    newer = (
        await client.get(
            url, params={"after": older["items"][1]["id"], "limit": 2}, headers=headers
        )
    ).json()
    assert [m["text"] for m in newer["items"]] == ["m1", "m2"]
    assert newer["next_cursor"] is not None
    rest = (await client.get(url, params={"cursor": newer["next_cursor"]}, headers=headers)).json()
    assert [m["text"] for m in rest["items"]] == ["m3", "m4"]
    r = await client.get(url, params={"before": str(uuid.uuid4())}, headers=headers)
    assert r.status_code == 404
