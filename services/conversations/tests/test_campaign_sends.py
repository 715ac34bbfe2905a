"""campaigns' ``recipient.dispatched``: the rules of ``POST /v1/conversations``, at most one
message per recipient ever, refusals published; statuses carry Meta's pricing through."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pytake_common.event_types import CAMPAIGNS_RECIPIENT_DISPATCHED_V1
from pytake_common.events import CloudEvent
from pytake_conversations.campaign_sends import campaign_handlers

from .helpers import (
    conversation_rows,
    deliver,
    emitted,
    message_rows,
    platform_event,
    sent,
    status,
)
from .test_outbound import Directory
from .test_start import Setup, template_event

HANDLE = campaign_handlers()[CAMPAIGNS_RECIPIENT_DISPATCHED_V1]


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
async def setup(app, org):
    return await Setup(app, org).ready()


def dispatched(setup, recipient_id, campaign_id, *, template="order_update", parameters=None):
    if parameters is None:
        parameters = {
            "parameters": [
                "{{contact.name}}",
                {"value": "{{contact.attributes.missing}}", "default": "your order"},
            ]
        }
    return CloudEvent(
        source="pytake/campaigns",
        type=CAMPAIGNS_RECIPIENT_DISPATCHED_V1,
        subject=str(recipient_id),
        tenantid=str(setup.org),
        data={
            "organization_id": str(setup.org),
            "campaign_id": str(campaign_id),
            "recipient_id": str(recipient_id),
            "contact_id": str(setup.contact_id),
            "number_id": str(setup.number_id),
            "template": {"name": template, "language": "en_US", "category": "UTILITY"},
            "parameters": parameters,
            "a_field_from_the_future": True,
        },
    )


async def handle(app, event: CloudEvent) -> None:
    async with app.state.db.transaction(organization_id=event.tenantid) as s:
        await HANDLE(s, event)


async def test_a_recipient_gets_its_message_in_a_new_conversation(app, org, setup):
    recipient, campaign = uuid.uuid4(), uuid.uuid4()
    await handle(app, dispatched(setup, recipient, campaign))

    [conv] = await conversation_rows(app, org)
    assert (conv["contact_id"], conv["started_by"]) == (setup.contact_id, campaign)
    [message] = await message_rows(app, org)
    assert (message["status"], message["type"]) == ("pending", "template")
    assert (message["sender_type"], message["sent_by"]) == ("campaign", campaign)
    assert message["recipient_id"] == recipient
    assert message["text"] == "Hi Maria, your order your order ships today."  # the default

    [request] = await emitted(app, org, "message.send_requested.v1")
    assert request["data"]["priority"] == "campaign"
    assert (request["data"]["campaign_id"], request["data"]["recipient_id"]) == (
        str(campaign),
        str(recipient),
    )
    assert request["data"]["requested_by"] == str(campaign)
    [appended] = await emitted(app, org, "message.appended.v1")
    assert (appended["data"]["campaign_id"], appended["data"]["recipient_id"]) == (
        str(campaign),
        str(recipient),
    )
    assert not await emitted(app, org, "message.refused.v1")


async def test_a_recipient_is_sent_once_ever_even_under_a_new_event_id(app, org, setup):
    recipient, campaign = uuid.uuid4(), uuid.uuid4()
    first = dispatched(setup, recipient, campaign)
    await handle(app, first)
    await handle(app, first)  # redelivered
    await handle(app, dispatched(setup, recipient, campaign))  # the same fact, a new event id
    assert len(await message_rows(app, org)) == 1
    assert len(await emitted(app, org, "message.send_requested.v1")) == 1


async def test_the_open_conversation_is_reused(app, org, setup):
    await deliver(app, setup.customer().says("hello"))
    [existing] = await conversation_rows(app, org)
    await handle(app, dispatched(setup, uuid.uuid4(), uuid.uuid4()))
    assert [c["id"] for c in await conversation_rows(app, org)] == [existing["id"]]
    assert len(await emitted(app, org, "conversation.opened.v1")) == 1  # the customer's


async def refusal(app, org):
    [event] = await emitted(app, org, "message.refused.v1")
    return event


async def test_a_marketing_template_without_consent_is_refused_and_nothing_is_written(
    app, org, setup
):
    await deliver(app, template_event(org, "spring_sale", category="MARKETING", body="Hi {{1}}"))
    recipient, campaign = uuid.uuid4(), uuid.uuid4()
    event = dispatched(
        setup,
        recipient,
        campaign,
        template="spring_sale",
        parameters={"parameters": ["{{contact.name}}"]},
    )
    await handle(app, event)
    refused = await refusal(app, org)
    assert refused["subject"] == str(recipient)
    assert refused["data"] == {
        "organization_id": str(org),
        "campaign_id": str(campaign),
        "recipient_id": str(recipient),
        "contact_id": str(setup.contact_id),
        "number_id": str(setup.number_id),
        "code": "consent_required",
        "detail": refused["data"]["detail"],
    }
    # the conversation it would have opened is gone with the savepoint
    assert await conversation_rows(app, org) == []
    assert await message_rows(app, org) == []
    assert not await emitted(app, org, "conversation.opened.v1")

    # consent given later does not turn the refused recipient into a message
    consent = platform_event(
        "pytake.contacts.contact.consent_changed.v1",
        org,
        {
            "contact_id": str(setup.contact_id),
            "marketing_opt_in": True,
            "source": "form",
            "changed_at": datetime.now(UTC).isoformat(),
        },
    )
    await deliver(app, consent)
    await handle(app, dispatched(setup, recipient, campaign, template="spring_sale"))
    assert await message_rows(app, org) == []
    assert len(await emitted(app, org, "message.refused.v1")) == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("blocked", "contact_blocked"),
        ("erased", "contact_erased"),
        ("unapproved", "template_not_approved"),
        ("missing_parameter", "template_parameter_missing"),
        ("unknown_number", "number_unavailable"),
        ("unknown_contact", "contact_not_found"),
    ],
)
async def test_refusals_carry_the_stable_code(app, org, setup, change, code):
    now = datetime.now(UTC).isoformat()
    parameters = None
    contact = {"contact_id": str(setup.contact_id)}
    if change == "blocked":
        data = contact | {"reason": None, "blocked_by": None, "blocked_at": now}
        await deliver(app, platform_event("pytake.contacts.contact.blocked.v1", org, data))
    elif change == "erased":
        data = contact | {"erased_at": now}
        await deliver(app, platform_event("pytake.contacts.contact.erased.v1", org, data))
    elif change == "unapproved":
        later = datetime.now(UTC) + timedelta(seconds=1)
        await deliver(app, template_event(org, status="PAUSED", at=later))
    elif change == "missing_parameter":
        parameters = {"parameters": ["{{contact.name}}", "{{contact.attributes.missing}}"]}
    elif change == "unknown_number":
        setup.number_id = uuid.uuid4()
    elif change == "unknown_contact":
        setup.contact_id = uuid.uuid4()
    await handle(app, dispatched(setup, uuid.uuid4(), uuid.uuid4(), parameters=parameters))
    assert (await refusal(app, org))["data"]["code"] == code
    assert await message_rows(app, org) == []


async def test_another_organizations_contact_is_refused_not_written(app, org, setup):
    other = await Setup(app, uuid.uuid4()).ready()
    setup.contact_id = other.contact_id  # campaigns of org naming org B's contact
    await handle(app, dispatched(setup, uuid.uuid4(), uuid.uuid4()))
    assert (await refusal(app, org))["data"]["code"] == "contact_not_found"
    assert await message_rows(app, other.org) == []


async def test_statuses_carry_the_pricing_through(app, org, setup):
    await handle(app, dispatched(setup, uuid.uuid4(), uuid.uuid4()))
    [message] = await message_rows(app, org)
    wamid = "wamid.C" + uuid.uuid4().hex
    at = datetime.now(UTC).replace(microsecond=0)
    await deliver(app, sent(org, message["id"], wamid, at))
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}
    await deliver(app, status(org, "delivered", at, wamid=wamid, pricing=pricing))
    changes = [e["data"] for e in await emitted(app, org, "message.status_changed.v1")]
    assert [(c["status"], c["pricing"]) for c in changes] == [
        ("sent", None),
        ("delivered", {"category": "utility", "billable": True, "pricing_model": "PMP"}),
    ]


async def test_a_suspended_organization_or_a_used_up_plan_refuses_recipients(app, org, setup):
    suspended = campaign_handlers(directory=Directory(suspended={org}))
    event = dispatched(setup, uuid.uuid4(), uuid.uuid4())
    async with app.state.db.transaction(organization_id=org) as s:
        await suspended[CAMPAIGNS_RECIPIENT_DISPATCHED_V1](s, event)
    used_up = campaign_handlers(directory=Directory(limits={"monthly_business_messages": 0}))
    event = dispatched(setup, uuid.uuid4(), uuid.uuid4())
    async with app.state.db.transaction(organization_id=org) as s:
        await used_up[CAMPAIGNS_RECIPIENT_DISPATCHED_V1](s, event)
    codes = [e["data"]["code"] for e in await emitted(app, org, "message.refused.v1")]
    assert codes == ["organization_suspended", "plan_limit_exceeded"]
    assert await message_rows(app, org) == []
