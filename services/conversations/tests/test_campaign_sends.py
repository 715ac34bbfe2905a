"""campaigns' ``recipient.dispatched``: the rules of ``POST /v1/conversations``, at most one
message per recipient ever, refusals published; statuses carry Meta's pricing through."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pytake_common.consumer import SetHandler
from pytake_common.event_types import CAMPAIGNS_RECIPIENT_DISPATCHED_V1
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for
from pytake_conversations.campaign_sends import campaign_handlers, resume_parked
from pytake_conversations.tables import campaign_recipients, stream_events

from .helpers import (
    Customer,
    conversation_rows,
    deliver,
    department,
    emitted,
    message_rows,
    platform_event,
    sent,
    set_conversation,
    status,
    user_created,
)
from .test_outbound import Directory
from .test_start import Setup, contact_event, template_event

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


# --- a batch ends as the same recipients one by one --------------------------------------

PEOPLE = "abcde"


async def _prepare_batch(app, org):
    """Contacts a-e on one number: b in an open conversation, c blocked, e with a closed
    conversation; a default round-robin department of two agents."""
    setup = await Setup(app, org).ready()
    people = {"a": setup.customer()}
    for name in PEOPLE[1:]:
        wa_id = f"55119{uuid.uuid4().int % 10**8:08d}"
        await deliver(app, contact_event(org, wa_id, name=name.upper(), attributes={}))
        people[name] = Customer(org, wa_id=wa_id, number_id=setup.number_id)
    await deliver(app, people["b"].says("hello"))
    await deliver(app, people["e"].says("an old question"))
    [closed] = [
        c for c in await conversation_rows(app, org) if c["contact_id"] == people["e"].contact_id
    ]
    await set_conversation(app, org, closed["id"], status="closed", closed_at=datetime.now(UTC))
    blocked = {"contact_id": str(people["c"].contact_id), "reason": None, "blocked_by": None}
    blocked["blocked_at"] = datetime.now(UTC).isoformat()
    await deliver(app, platform_event("pytake.contacts.contact.blocked.v1", org, blocked))
    agents = [uuid.uuid4(), uuid.uuid4()]
    for agent in agents:
        await deliver(app, user_created(org, agent))
    await deliver(app, department(org, uuid.uuid4(), agents, is_default=True))
    return setup, people, agents


def _recipients(setup, people):
    """The batch: a twice (two campaigns), then b-e; a's first recipient again under
    another event id; d's parameter has no value (and no default)."""
    campaigns = [uuid.uuid4(), uuid.uuid4()]
    names: dict[uuid.UUID, str] = {}
    events = []
    for label, who, campaign in [
        ("a1", "a", 0),
        ("a2", "a", 1),
        ("b", "b", 0),
        ("c", "c", 0),
        ("d", "d", 0),
        ("e", "e", 0),
    ]:
        recipient = uuid.uuid4()
        names[recipient] = label
        setup.contact_id = people[who].contact_id
        parameters = {"parameters": ["{{contact.name}}", "{{contact.attributes.order}}"]}
        if who != "d":
            parameters["parameters"][1] = {"value": "{{contact.attributes.order}}", "default": "-"}
        events.append(dispatched(setup, recipient, campaigns[campaign], parameters=parameters))
    events.insert(3, events[0].model_copy(update={"id": uuid.uuid4()}))
    return events, names, campaigns


async def _batch_outcome(app, org, people, names, campaigns, agents):
    contact = {p.contact_id: name for name, p in people.items()}
    who = {**{c: f"campaign{i}" for i, c in enumerate(campaigns)}, **names}
    who |= {a: f"agent{i}" for i, a in enumerate(agents)}
    convs = await conversation_rows(app, org)
    conversation = {c["id"]: contact[c["contact_id"]] for c in convs}
    conversations = sorted(
        (
            contact[c["contact_id"]],
            c["status"],
            who.get(c["started_by"]),
            who.get(c["assignee_id"]),
            c["previous_conversation_id"] is not None,
            c["first_response_at"] is not None,
        )
        for c in convs
    )
    msgs = sorted(
        (conversation[m["conversation_id"]], m["text"], m["status"], who.get(m["recipient_id"]))
        for m in await message_rows(app, org)
    )
    async with app.state.db.transaction(organization_id=org) as s:
        frames = (
            await s.execute(
                select(stream_events.c.type, stream_events.c.data).order_by(stream_events.c.id)
            )
        ).all()
    # in order per conversation (Kafka keys and the stream order only within one)
    per_conversation: dict[str, list] = {}
    for type_, data in frames:
        if "message" in data:
            m = data["message"]
            key = conversation[uuid.UUID(m["conversation_id"])]
            item = (type_, m["text"], m["status"], m["sender_type"])
        else:
            c = data["conversation"]
            key = contact[uuid.UUID(c["contact_id"])]
            assignee = who.get(uuid.UUID(c["assignee_id"])) if c["assignee_id"] else None
            item = (type_, c["status"], assignee, c["unread_count"])
        per_conversation.setdefault(key, []).append(item)
    events: dict[str, list] = {}
    for e in await emitted(app, org):
        d = e["data"]
        if "contact_id" in d:
            key = contact[uuid.UUID(d["contact_id"])]
        elif "conversation_id" in d:
            key = conversation[uuid.UUID(d["conversation_id"])]
        else:
            continue
        item = (
            e["type"],
            who.get(uuid.UUID(d["recipient_id"])) if d.get("recipient_id") else None,
            d.get("code"),
            d.get("text"),
            d.get("priority"),
            d.get("payload"),
            d.get("to") is not None,
        )
        events.setdefault(key, []).append(item)
    return conversations, msgs, per_conversation, events


async def test_a_batch_ends_as_the_same_recipients_one_by_one(app):
    directory = Directory(limits={"monthly_business_messages": 3})
    handler = campaign_handlers(directory=directory)[CAMPAIGNS_RECIPIENT_DISPATCHED_V1]
    assert isinstance(handler, SetHandler)
    outcomes = []
    for at_once in (False, True):
        org = uuid.uuid4()
        setup, people, agents = await _prepare_batch(app, org)
        events, names, campaigns = _recipients(setup, people)
        if at_once:
            async with app.state.db.transaction(organization_id=org) as s:
                await handler.apply(s, [handler.parse(e) for e in events])
        else:
            for event in events:
                async with app.state.db.transaction(organization_id=org) as s:
                    await handler(s, event)
        outcomes.append(await _batch_outcome(app, org, people, names, campaigns, agents))
    one_by_one, at_once = outcomes
    assert at_once[0] == one_by_one[0]  # conversations
    assert at_once[1] == one_by_one[1]  # messages
    assert at_once[2] == one_by_one[2]  # stream frames, in order per conversation
    assert at_once[3] == one_by_one[3]  # outbox events, in order per contact
    # what that is: a's two recipients in one new conversation (agent0), b's reused,
    # c blocked, d's parameter missing, e's over the plan's 3 messages a month
    conversations, msgs, _, events = at_once
    assert [(c[0], c[3], c[4]) for c in conversations] == [
        ("a", "agent0", False),
        ("b", None, False),
        ("e", None, False),
    ]
    assert [(m[0], m[3]) for m in msgs if m[3]] == [("a", "a1"), ("a", "a2"), ("b", "b")]
    refused = sorted((k, e[1], e[2]) for k, es in events.items() for e in es if e[2])
    assert refused == [
        ("c", "c", "contact_blocked"),
        ("d", "d", "template_parameter_missing"),
        ("e", "e", "plan_limit_exceeded"),
    ]


# --- a contact the replica does not have yet ---------------------------------------------

WAITING = campaign_handlers(contact_wait_s=60.0)[CAMPAIGNS_RECIPIENT_DISPATCHED_V1]


async def unpark_due(app, org):
    """The parked recipients' deadlines passed (as if their wait were over)."""
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            update(campaign_recipients)
            .where(campaign_recipients.c.parked_until.is_not(None))
            .values(parked_until=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_a_recipient_whose_contact_lags_waits_for_it_and_gets_its_message(app, org, setup):
    wa_id = f"55118{uuid.uuid4().int % 10**8:08d}"
    lagging = contact_id_for(org, wa_id)
    waiting = dispatched(setup, uuid.uuid4(), uuid.uuid4())
    setup.contact_id = lagging
    parked = dispatched(setup, uuid.uuid4(), uuid.uuid4())
    # both in one batch: the known contact's message goes at once, the other waits
    async with app.state.db.transaction(organization_id=org) as s:
        await WAITING.apply(s, [WAITING.parse(e) for e in (waiting, parked)])
    [first] = await message_rows(app, org)
    assert not await emitted(app, org, "message.refused.v1")
    assert await resume_parked(app.state.db) == 0  # nothing came yet: it keeps waiting
    async with app.state.db.transaction(organization_id=org) as s:
        await WAITING(s, parked)  # redelivered meanwhile: still the one claim
    await deliver(app, contact_event(org, wa_id, name="Ana"))  # contacts' event, late

    assert await resume_parked(app.state.db) == 1
    messages = await message_rows(app, org)
    assert len(messages) == 2
    [second] = [m for m in messages if m["id"] != first["id"]]
    assert second["recipient_id"] == uuid.UUID(parked.data["recipient_id"])
    assert second["text"].startswith("Hi Ana,")
    assert not await emitted(app, org, "message.refused.v1")
    assert await resume_parked(app.state.db) == 0  # handled once


async def test_a_contact_that_never_comes_is_refused_after_the_wait(app, org, setup):
    setup.contact_id = uuid.uuid4()
    async with app.state.db.transaction(organization_id=org) as s:
        await WAITING(s, dispatched(setup, uuid.uuid4(), uuid.uuid4()))
    assert not await emitted(app, org, "message.refused.v1")
    await unpark_due(app, org)
    assert await resume_parked(app.state.db) == 1
    assert (await refusal(app, org))["data"]["code"] == "contact_not_found"
    assert await message_rows(app, org) == []
    assert await resume_parked(app.state.db) == 0
