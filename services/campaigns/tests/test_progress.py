"""Recipients' progress from conversations' events: accepted, sent, delivered, read,
failed (Meta's code), refused, replied, cost; never backwards; each event twice."""

import uuid
from datetime import UTC, datetime, timedelta

from pytake_campaigns.dispatcher import Dispatcher

from .helpers import (
    World,
    again,
    create_campaign,
    deliver,
    inbound,
    recipient_rows,
    refused,
    rewind_credit,
    send_requested,
    start_campaign,
    status_changed,
)


async def _dispatched(app, settings, client, tokens, contacts=4):
    w = await World().build(app, settings, contacts=contacts, throughput=10)
    c = await create_campaign(client, tokens, w)
    await start_campaign(client, tokens, w, c["id"])
    await rewind_credit(app, c["id"])
    dispatcher: Dispatcher = app.state.dispatcher
    assert await dispatcher.tick() == contacts
    return w, c, await recipient_rows(app, c["id"])


async def test_statuses_move_forward_only_and_record_cost(app, settings, client, tokens):
    w, c, rows = await _dispatched(app, settings, client, tokens, contacts=1)
    org, rid = w.org, rows[0]["id"]
    message, conversation = uuid.uuid4(), uuid.uuid4()
    requested = send_requested(org, rid, message, conversation)
    t0 = datetime.now(UTC)
    delivered = status_changed(
        org,
        message,
        conversation,
        "delivered",
        at=t0 + timedelta(seconds=2),
        pricing={"category": "marketing", "billable": True, "pricing_model": "PMP"},
    )
    sent = status_changed(org, message, conversation, "sent", at=t0 + timedelta(seconds=1))
    await deliver(app, settings, requested, again(requested), delivered, sent, again(delivered))
    [row] = await recipient_rows(app, c["id"])
    assert row["status"] == "delivered"  # the late "sent" did not move it back
    assert row["message_id"] == message and row["conversation_id"] == conversation
    assert row["pricing_category"] == "marketing" and row["billable"] is True
    assert float(row["cost"]) == settings.campaign_rates["marketing"]
    read = status_changed(org, message, conversation, "read", at=t0 + timedelta(seconds=3))
    await deliver(app, settings, read, inbound(org, conversation, t0 + timedelta(seconds=4)))
    [row] = await recipient_rows(app, c["id"])
    assert row["status"] == "replied" and row["read_at"] is not None
    # a failure after the customer read and replied changes nothing
    await deliver(app, settings, status_changed(org, message, conversation, "failed", error_code=1))
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "replied"
    stats = (
        await client.get(
            f"/v1/campaigns/{c['id']}/stats", headers=tokens.headers(organization_id=org)
        )
    ).json()
    assert stats["replied"] == 1 and stats["by_status"]["replied"] == 1
    assert stats["cost_by_category"] == {"marketing": settings.campaign_rates["marketing"]}
    assert stats["cost_total"] == settings.campaign_rates["marketing"]
    assert stats["currency"] == "USD"


async def test_failures_keep_metas_code_and_refusals_theirs(app, settings, client, tokens):
    w, c, rows = await _dispatched(app, settings, client, tokens, contacts=4)
    org = w.org
    events = []
    messages = {}
    for row in rows[:3]:
        messages[row["id"]] = (uuid.uuid4(), uuid.uuid4())
        events.append(send_requested(org, row["id"], *messages[row["id"]]))
    (m0, c0), (m1, c1), (m2, c2) = messages.values()
    events += [
        status_changed(org, m0, c0, "failed", error_code=131049, error_detail="marketing limit"),
        status_changed(org, m1, c1, "sent"),
        status_changed(org, m1, c1, "failed", error_code=131050, error_detail="stopped marketing"),
        status_changed(org, m2, c2, "sent"),
        status_changed(org, m2, c2, "delivered"),
        status_changed(org, m2, c2, "failed", error_code=131026, error_detail="undeliverable"),
    ]
    refusal = refused(org, rows[3]["id"], "consent_required")
    events += [refusal, again(refusal)]
    await deliver(app, settings, *events)
    by_id = {r["id"]: r for r in await recipient_rows(app, c["id"])}
    got = [(by_id[r["id"]]["status"], by_id[r["id"]]["error_code"]) for r in rows]
    assert got == [
        ("failed", "131049"),
        ("failed", "131050"),
        ("failed", "131026"),  # failed after delivered: WhatsApp's multi-device case
        ("failed", "consent_required"),
    ]
    # a delivery status after a failure changes nothing
    await deliver(app, settings, status_changed(org, m0, c0, "delivered"))
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "failed"
    headers = tokens.headers(organization_id=org)
    stats = (await client.get(f"/v1/campaigns/{c['id']}/stats", headers=headers)).json()
    assert stats["failures"] == {
        "131049": 1,
        "131050": 1,
        "131026": 1,
        "consent_required": 1,
    }
    page = (
        await client.get(
            f"/v1/campaigns/{c['id']}/recipients?status=failed&limit=2", headers=headers
        )
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (
        await client.get(
            f"/v1/campaigns/{c['id']}/recipients?status=failed&limit=2&cursor={page['next_cursor']}",
            headers=headers,
        )
    ).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    listed = [i["id"] for i in page["items"] + rest["items"]]
    assert listed == [str(r["id"]) for r in rows]
    bad = await client.get(f"/v1/campaigns/{c['id']}/recipients?cursor=nope", headers=headers)
    assert bad.status_code == 422


async def test_replies_count_only_after_the_campaigns_message(app, settings, client, tokens):
    w, c, rows = await _dispatched(app, settings, client, tokens, contacts=1)
    message, conversation = uuid.uuid4(), uuid.uuid4()
    early = inbound(w.org, conversation, rows[0]["dispatched_at"] - timedelta(minutes=5))
    await deliver(app, settings, send_requested(w.org, rows[0]["id"], message, conversation), early)
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "accepted"
    other_conversation = inbound(w.org, uuid.uuid4())
    await deliver(app, settings, other_conversation)
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "accepted"
    await deliver(app, settings, inbound(w.org, conversation))
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "replied"


async def test_another_organizations_event_does_not_touch_recipients(app, settings, client, tokens):
    _w, c, rows = await _dispatched(app, settings, client, tokens, contacts=1)
    stranger = uuid.uuid4()
    # the recipient's id in an event of another tenant: its organization filter misses it
    await deliver(app, settings, send_requested(stranger, rows[0]["id"]))
    await deliver(app, settings, refused(stranger, rows[0]["id"]))
    assert (await recipient_rows(app, c["id"]))[0]["status"] == "dispatched"
