import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from pytake_tenants.tables import usage_counters

from .support import again, deliver, deliver_batch, event, new_org, now, user_event
from .test_stats import appended, opened


def number_event(kind: str, org: uuid.UUID, number: uuid.UUID):
    return event(
        f"pytake.whatsapp.number.{kind}.v1",
        org,
        number,
        number_id=number,
        phone_number_id="1065",
        waba_id="2001",
        display_phone_number="+55 11 4000-0000",
    )


def contact_event(kind: str, org: uuid.UUID, contact: uuid.UUID):
    extra = {"erased_at": now()} if kind == "erased" else {"wa_id": "5511999990000", "name": "C"}
    return event(f"pytake.contacts.contact.{kind}.v1", org, contact, contact_id=contact, **extra)


def sent(org: uuid.UUID, at: datetime | None = None, message: uuid.UUID | None = None):
    message = message or uuid.uuid4()
    return event(
        "pytake.whatsapp.message.sent.v1",
        org,
        message,
        message_id=message,
        number_id=uuid.uuid4(),
        wamid="wamid.x",
        to="5511999990000",
        sent_at=at or now(),
    )


async def usage_of(client, tokens, org) -> dict:
    r = await client.get("/v1/organizations/me/usage", headers=tokens.headers(organization_id=org))
    assert r.status_code == 200, r.text
    return r.json()["usage"]


async def test_usage_shows_each_limit_beside_its_use(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    usage = await usage_of(client, tokens, org)
    assert usage["agents"] == {"limit": 2, "used": 1, "remaining": 1, "period": None}
    assert usage["numbers"]["used"] == 0 and usage["numbers"]["limit"] == 1
    assert usage["departments"] == {"limit": 1, "used": 0, "remaining": 1, "period": None}
    month = datetime.now(UTC).strftime("%Y-%m")
    assert usage["monthly_business_messages"]["period"] == month
    assert usage["api_requests_per_minute"] == {
        "limit": 60,
        "used": None,
        "remaining": None,
        "period": None,
    }
    viewer = await client.get(
        "/v1/organizations/me/usage", headers=tokens.headers(organization_id=org, role="viewer")
    )
    assert viewer.status_code == 200


async def test_agents_count_active_users_once_whatever_the_duplicates(
    app, settings, client, tokens
):
    org, _ = await new_org(app, settings)
    user = uuid.uuid4()
    created = user_event("created", org, user, full_name="Bia", role="agent", is_active=False)
    activated = user_event("activated", org, user)
    await deliver(app, settings, created, created)
    assert (await usage_of(client, tokens, org))["agents"]["used"] == 1
    await deliver(app, settings, activated, activated, again(activated))
    assert (await usage_of(client, tokens, org))["agents"]["used"] == 2
    deactivated = user_event("deactivated", org, user)
    await deliver(app, settings, deactivated, again(deactivated))
    assert (await usage_of(client, tokens, org))["agents"]["used"] == 1
    updated = user_event(
        "updated", org, user, full_name="Bia", role="agent", is_active=True, changed=["is_active"]
    )
    await deliver(app, settings, updated)
    assert (await usage_of(client, tokens, org))["agents"]["used"] == 2
    deleted = user_event("deleted", org, user)
    await deliver(app, settings, deleted, again(deleted), again(activated), again(created))
    assert (await usage_of(client, tokens, org))["agents"]["used"] == 1


async def test_numbers_and_contacts_count_each_fact_once(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    number, contact_a, contact_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    reg = number_event("registered", org, number)
    a = contact_event("created", org, contact_a)
    await deliver(app, settings, reg, reg, again(reg), a, a, again(a))
    await deliver(app, settings, contact_event("created", org, contact_b))
    usage = await usage_of(client, tokens, org)
    assert usage["numbers"]["used"] == 1
    assert usage["contacts"]["used"] == 2
    erased = contact_event("erased", org, contact_a)
    removed = number_event("removed", org, number)
    await deliver(app, settings, erased, again(erased), removed, again(removed))
    # a late replay of the creation after the erasure counts nothing
    await deliver(app, settings, again(a), again(reg))
    usage = await usage_of(client, tokens, org)
    assert usage["numbers"]["used"] == 0
    assert usage["contacts"]["used"] == 1
    # an erasure that overtook its creation leaves a tombstone
    ghost = uuid.uuid4()
    await deliver(app, settings, contact_event("erased", org, ghost))
    await deliver(app, settings, contact_event("created", org, ghost))
    assert (await usage_of(client, tokens, org))["contacts"]["used"] == 1


async def test_business_messages_are_counted_per_month(app, settings, client, tokens):
    org, _ = await new_org(app, settings)
    one = sent(org)
    await deliver(app, settings, one, one, again(one), sent(org))
    last_year = sent(org, at=datetime(2020, 1, 31, 23, 59, tzinfo=UTC))
    await deliver(app, settings, last_year)
    usage = await usage_of(client, tokens, org)
    assert usage["monthly_business_messages"]["used"] == 2
    assert usage["monthly_business_messages"]["remaining"] == 248
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (
            await s.execute(
                select(usage_counters.c.period, usage_counters.c.value).where(
                    usage_counters.c.metric == "monthly_business_messages"
                )
            )
        ).all()
    assert dict(rows) == {datetime.now(UTC).strftime("%Y-%m"): 2, "2020-01": 1}


async def test_a_batch_counts_each_organization_s_facts_once(app, settings, client, tokens):
    """Counting is set-based: a batch's records of one type and organization count in
    one statement; duplicates (the same record, the same fact under another event id)
    count once, in the batch and against what was counted before."""
    org, other = (await new_org(app, settings))[0], (await new_org(app, settings, "Other"))[0]
    known = contact_event("created", org, uuid.uuid4())
    await deliver(app, settings, known)
    a, b = contact_event("created", org, uuid.uuid4()), contact_event("created", org, uuid.uuid4())
    message = sent(org)
    day = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    first, conversation = appended(org, uuid.uuid4(), "inbound", day), uuid.uuid4()
    batch = [
        known,
        again(known),
        a,
        a,
        again(a),
        b,
        contact_event("created", other, uuid.uuid4()),
        message,
        again(message),
        sent(org),
        sent(org, at=datetime(2020, 1, 31, 23, 59, tzinfo=UTC)),
        sent(other),
        opened(org, conversation, day),
        again(opened(org, conversation, day)),
        first,
        again(first),
        appended(org, uuid.uuid4(), "outbound", day),
        contact_event("erased", org, b.data["contact_id"]),  # per record, after the set
    ]
    await deliver_batch(app, settings, *batch)
    usage = await usage_of(client, tokens, org)
    assert usage["contacts"]["used"] == 2  # known and a (b created, then erased)
    assert usage["monthly_business_messages"]["used"] == 2
    assert (await usage_of(client, tokens, other))["contacts"]["used"] == 1
    assert (await usage_of(client, tokens, other))["monthly_business_messages"]["used"] == 1
    r = await client.get(
        "/v1/organizations/me/stats",
        params={"from": "2026-03-01", "to": "2026-03-01"},
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    body = r.json()
    assert (body["conversations_opened"], body["messages_inbound"], body["messages_outbound"]) == (
        1,
        1,
        1,
    )
    await deliver_batch(app, settings, *batch)  # redelivered whole: nothing counts again
    assert (await usage_of(client, tokens, org))["contacts"]["used"] == 2
    assert (await usage_of(client, tokens, org))["monthly_business_messages"]["used"] == 2
