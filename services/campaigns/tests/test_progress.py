"""Recipients' progress from conversations' events: accepted, sent, delivered, read,
failed (Meta's code), refused, replied, cost; never backwards; each event twice."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from pytake_campaigns.dispatcher import Dispatcher
from pytake_campaigns.handlers import handlers
from pytake_campaigns.progress import WRITTEN, Progress, StatusChanged, apply_progress
from pytake_common import event_types as et
from pytake_common.consumer import SetHandler
from pytake_common.db import Database

from .helpers import (
    World,
    again,
    create_campaign,
    deliver,
    inbound,
    internal,
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


def _progress_batch(org, rows):
    """Every kind of progress, out of order where Meta is: r0 accepted, read before its
    delivered (with pricing) and a late sent, then replied; r1 sent, delivered, a second
    pricing (ignored), failed; r2 refused twice; r3's link by its appended before its
    send request; a reply in a conversation of no recipient; a conversation a campaign
    opened (an initiation)."""
    t0 = datetime.now(UTC)
    (m0, c0), (m1, c1), (m3, c3) = [(uuid.uuid4(), uuid.uuid4()) for _ in range(3)]
    pricing = {"category": "MARKETING", "billable": True, "pricing_model": "PMP"}
    appended3 = internal(
        et.CONVERSATIONS_MESSAGE_APPENDED_V1,
        org,
        m3,
        message_id=m3,
        conversation_id=c3,
        contact_id=uuid.uuid4(),
        direction="outbound",
        type="template",
        created_at=t0,
        recipient_id=rows[3]["id"],
    )
    opened = internal(
        et.CONVERSATIONS_CONVERSATION_OPENED_V1,
        org,
        c0,
        conversation_id=c0,
        contact_id=rows[0]["contact_id"],
        number_id=rows[0]["number_id"],
        opened_at=t0,
        started_by=uuid.uuid4(),
    )
    return [
        opened,
        send_requested(org, rows[0]["id"], m0, c0),
        send_requested(org, rows[1]["id"], m1, c1),
        appended3,
        status_changed(org, m0, c0, "read", at=t0 + timedelta(seconds=3)),
        status_changed(org, m0, c0, "delivered", at=t0 + timedelta(seconds=2), pricing=pricing),
        status_changed(org, m1, c1, "sent", at=t0 + timedelta(seconds=1)),
        status_changed(org, m0, c0, "sent", at=t0 + timedelta(seconds=1)),
        refused(org, rows[2]["id"], "contact_blocked"),
        status_changed(org, m1, c1, "delivered", at=t0 + timedelta(seconds=2), pricing=pricing),
        status_changed(
            org, m1, c1, "delivered", pricing={"category": "utility", "billable": False}
        ),
        inbound(org, c0, t0 + timedelta(seconds=9)),
        inbound(org, uuid.uuid4(), t0 + timedelta(seconds=9)),
        send_requested(org, rows[3]["id"], uuid.uuid4(), uuid.uuid4()),
        status_changed(org, m1, c1, "failed", error_code=131026, error_detail="undeliverable"),
        refused(org, rows[2]["id"], "contact_erased"),
        again(opened),
    ]


_COMPARED = [c for c in WRITTEN if c not in ("message_id", "conversation_id", "moved")]


async def test_a_batch_ends_as_the_same_events_one_by_one(app, settings, client, tokens):
    outcomes = []
    for at_once in (False, True):
        w, c, rows = await _dispatched(app, settings, client, tokens, contacts=4)
        events = _progress_batch(w.org, rows)
        if at_once:
            handler = handlers(settings)[et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1]
            assert isinstance(handler, SetHandler)
            async with app.state.db.transaction(organization_id=w.org) as s:
                await handler.apply(s, [handler.parse(e) for e in events])
        else:
            await deliver(app, settings, *events)
        after = await recipient_rows(app, c["id"])
        links = {r["message_id"] for r in after} | {r["conversation_id"] for r in after}
        async with app.state.db.transaction(bypass_rls=True) as s:
            initiations = await s.scalar(
                text(
                    "SELECT count(*) FROM initiations"
                    " WHERE fact LIKE 'conversation:%' AND organization_id = :o"
                ),
                {"o": w.org},
            )
        # each world has its own times: which stamps are set is what the order decides
        stamps = [
            tuple(
                v is not None if isinstance(v, datetime) or k.endswith("_at") else v
                for k, v in ((k, r[k]) for k in _COMPARED)
            )
            for r in after
        ]
        outcomes.append((stamps, len(links), initiations))
    one_by_one, at_once = outcomes
    assert at_once == one_by_one
    assert [r[0] for r in at_once[0]] == ["replied", "failed", "failed", "accepted"]
    assert at_once[0][0][8] is False  # r0's delivered came after its read: not stamped
    assert at_once[0][2][1] == "contact_blocked"  # the first refusal
    assert at_once[2] == 1


async def test_a_young_table_grown_by_a_freeze_is_read_by_index(settings):
    """The progress statement first runs while no campaign has frozen anything (every
    agent message's status reaches it), on a connection that keeps it prepared: after five
    executions PostgreSQL may keep a generic plan made for the empty table. After a freeze
    of thousands of recipients, a batch is planned for the table as it is: at most a scan
    or two of it at this size (an index beyond), never one per recipient (that plan read
    it once per row version of it: 2.4 s a batch at 2,000 recipients, until autovacuum's
    ANALYZE).
    Counted in the transaction's own table statistics."""
    db = Database(settings.service_database_url(), app_role=settings.db_app_role, pool_size=1)
    org, number, campaign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)

    def status(message: uuid.UUID) -> Progress:
        return Progress(
            time=now,
            data=StatusChanged(organization_id=org, message_id=message, status="sent", at=now),
        )

    try:
        for _ in range(8):  # an agent message's status each: nothing of a campaign's
            async with db.transaction(organization_id=org) as s:
                await apply_progress(s, [status(uuid.uuid4())], settings.campaign_rates)
        n = 3000
        audience = [(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) for _ in range(n)]
        async with db.transaction(organization_id=org) as s:
            await s.execute(
                text(
                    "INSERT INTO campaigns (id, organization_id, name, number_id, template,"
                    " audience, status, started_at) VALUES (:c, :o, 'young', :n,"
                    ' \'{"name": "t", "language": "en"}\', \'{}\', \'running\', now())'
                ),
                {"c": campaign, "o": org, "n": number},
            )
            await s.execute(
                text(
                    "INSERT INTO campaign_recipients (id, organization_id, campaign_id,"
                    " contact_id, number_id, status, message_id, dispatched_at)"
                    " SELECT r.id, :o, :c, r.contact, :n, 'accepted', r.message, now()"
                    " FROM unnest(CAST(:ids AS uuid[]), CAST(:contacts AS uuid[]),"
                    " CAST(:messages AS uuid[])) AS r(id, contact, message)"
                ),
                {
                    "o": org,
                    "c": campaign,
                    "n": number,
                    "ids": [a[0] for a in audience],
                    "contacts": [a[1] for a in audience],
                    "messages": [a[2] for a in audience],
                },
            )
        batch = [status(message) for _, _, message in audience[1000:1030]]
        async with db.transaction(organization_id=org) as s:
            await apply_progress(s, batch, settings.campaign_rates)
            read = (
                await s.execute(
                    text(
                        "SELECT coalesce(seq_tup_read, 0) AS seq, coalesce(idx_tup_fetch, 0)"
                        " AS idx FROM pg_stat_xact_user_tables"
                        " WHERE relname = 'campaign_recipients'"
                    )
                )
            ).one()
            sent = await s.scalar(
                text("SELECT count(*) FROM campaign_recipients WHERE status = 'sent'")
            )
        assert sent == 30
        assert read.seq + read.idx <= 2 * n, f"{read.seq} rows scanned, {read.idx} by index"
    finally:
        await db.dispose()
