"""WhatsApp's 131050 clears the contact's marketing consent (once, and never over a newer one)."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.event import listen as event_listen
from sqlalchemy.event import remove as event_remove

from pytake_common.consumer import SetHandler
from pytake_common.event_types import (
    WHATSAPP_MESSAGE_FAILED_V1,
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
)
from pytake_contacts.handlers import HANDLERS

from .helpers import T0, deliver, emitted, event, received, rows

WA_ID = "5511987654321"


def later(minutes=1):
    """A time after the consent recorded through the API (the database's now)."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


def failed(org, code=131050, at=None, to=WA_ID):
    at = at or later()
    return event(
        org,
        WHATSAPP_MESSAGE_FAILED_V1,
        {
            "message_id": str(uuid.uuid4()),
            "number_id": str(uuid.uuid4()),
            "to": to,
            "error_code": code,
            "error_title": "opted out",
            "error_detail": "The customer has chosen to stop receiving marketing messages",
            "retryable": False,
            "failed_at": at.isoformat(),
        },
    )


def status_of(org, status, errors=(), at=None, pricing=None):
    at = at or later()
    return event(
        org,
        WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
        {
            "message_id": str(uuid.uuid4()),
            "wamid": "wamid.X" + uuid.uuid4().hex,
            "number_id": str(uuid.uuid4()),
            "status": status,
            "timestamp": at.isoformat(),
            "recipient_id": WA_ID,
            "errors": list(errors),
            "pricing": pricing,
        },
    )


def failed_status(org, code=131050, at=None):
    error = {"code": code, "title": "t", "message": "m", "details": "d"}
    return status_of(org, "failed", [error], at)


async def consenting_contact(app, client, org, agent):
    await deliver(app, received(org, wa_id=WA_ID))
    [row] = await rows(app, org)
    r = await client.post(
        f"/v1/contacts/{row['id']}/consent",
        json={"marketing_opt_in": True, "source": "form"},
        headers=agent,
    )
    assert r.status_code == 200 and r.json()["marketing_opt_in"] is True
    return row["id"]


async def consent_events(app, org):
    return [e["data"] for e in await emitted(app, org) if e["type"].endswith("consent_changed.v1")]


async def test_a_failed_send_with_131050_clears_marketing_consent_once(app, client, org, agent):
    contact_id = await consenting_contact(app, client, org, agent)
    at = later().replace(microsecond=0)
    event_ = failed(org, at=at)
    await deliver(app, event_)
    await deliver(app, event_)  # redelivered
    await deliver(app, failed(org, at=later(2)))  # another refused message
    [row] = await rows(app, org)
    assert (row["marketing_opt_in"], row["consent_source"]) == (False, "whatsapp")
    assert row["consent_changed_at"] == at
    opt_in, opt_out = await consent_events(app, org)
    assert opt_in["marketing_opt_in"] is True and opt_in["reason"] is None
    assert opt_out == {
        "contact_id": str(contact_id),
        "organization_id": str(org),
        "marketing_opt_in": False,
        "source": "whatsapp",
        "changed_at": opt_out["changed_at"],
        "reason": "meta_131050",
    }
    r = await client.get(f"/v1/contacts/{contact_id}/timeline", headers=agent)
    facts = [i for i in r.json()["items"] if i["kind"] == "contact.consent_changed"]
    assert len(facts) == 2  # the agent's opt-in and WhatsApp's opt-out


async def test_a_failed_status_webhook_with_131050_clears_it_too(app, client, org, agent):
    await consenting_contact(app, client, org, agent)
    await deliver(app, failed_status(org))
    [row] = await rows(app, org)
    assert row["marketing_opt_in"] is False
    assert (await consent_events(app, org))[-1]["reason"] == "meta_131050"


async def test_other_codes_other_contacts_and_newer_consent_are_left_alone(app, client, org, agent):
    contact_id = await consenting_contact(app, client, org, agent)
    await deliver(app, failed(org, code=131049))  # per-user marketing limit: not an opt-out
    await deliver(app, failed_status(org, code=131026))
    await deliver(app, failed(org, to="5511900000000"))  # nobody we know
    await deliver(app, failed(uuid.uuid4()))  # the same WhatsApp user, another organization
    # Meta's refusal dated before the consent the agent recorded: the consent stands
    await deliver(app, failed(org, at=T0))
    [row] = await rows(app, org)
    assert row["marketing_opt_in"] is True
    assert len(await consent_events(app, org)) == 1
    assert row["id"] == contact_id


async def test_a_batch_of_statuses_touches_the_database_only_for_131050(app, client, org, agent):
    await consenting_contact(app, client, org, agent)
    handler = HANDLERS[WHATSAPP_MESSAGE_STATUS_UPDATED_V1]
    assert isinstance(handler, SetHandler)  # a batch's statuses at once
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    pricing = {"billable": True, "category": "marketing", "pricing_model": "PMP"}
    plain = [status_of(org, s, pricing=pricing) for s in ("sent", "delivered", "read")]
    plain.append(failed_status(org, code=131026))  # a failure, not an opt-out
    engine = app.state.db.engine.sync_engine
    async with app.state.db.transaction(organization_id=org) as s:
        await s.connection()  # the transaction's own statements are not the handler's
        event_listen(engine, "before_cursor_execute", count)
        try:
            await handler.apply(s, [handler.parse(e) for e in plain])
        finally:
            event_remove(engine, "before_cursor_execute", count)
    assert statements == []
    assert (await rows(app, org))[0]["marketing_opt_in"] is True

    async with app.state.db.transaction(organization_id=org) as s:
        await s.connection()
        event_listen(engine, "before_cursor_execute", count)
        try:
            await handler.apply(s, [handler.parse(e) for e in [*plain, failed_status(org)]])
        finally:
            event_remove(engine, "before_cursor_execute", count)
    assert statements  # the opt-out's (the count does see the handler's statements)
    assert (await rows(app, org))[0]["marketing_opt_in"] is False
    assert (await consent_events(app, org))[-1]["reason"] == "meta_131050"
