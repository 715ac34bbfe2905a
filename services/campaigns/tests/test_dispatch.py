"""The dispatcher: pacing and the in-flight window, pause/resume/cancel, schedules,
the messaging limit, completion, and a crash mid-campaign."""

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, insert, text, update

from pytake_campaigns.dispatcher import Dispatcher
from pytake_campaigns.tables import initiations, recipients
from pytake_common import event_types as et

from .helpers import (
    World,
    create_campaign,
    deliver,
    dispatched_events,
    emitted,
    internal,
    recipient_rows,
    rewind_credit,
    send_requested,
    start_campaign,
    status_changed,
)


async def _sent(app, settings, org, rows) -> None:
    """conversations accepted each recipient's message and Meta took it."""
    events = []
    for row in rows:
        message, conversation = uuid.uuid4(), uuid.uuid4()
        events += [
            send_requested(org, row["id"], message, conversation),
            status_changed(org, message, conversation, "sent"),
        ]
    await deliver(app, settings, *events)


async def _campaign(app, settings, client, tokens, contacts=12, throughput=5, **create):
    w = await World().build(app, settings, contacts=contacts, throughput=throughput)
    c = await create_campaign(client, tokens, w, **create)
    await start_campaign(client, tokens, w, c["id"])
    return w, c


def _status(rows, status):
    return [r for r in rows if r["status"] == status]


async def test_pacing_keeps_one_second_in_flight(app, settings, client, tokens):
    w, c = await _campaign(app, settings, client, tokens)
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"], 1.0)
    assert await dispatcher.tick() == 5  # 5/s, one second of credit
    await rewind_credit(app, c["id"], 5.0)
    assert await dispatcher.tick() == 0  # five in flight: the window is full
    rows = await recipient_rows(app, c["id"])
    first = _status(rows, "dispatched")
    assert [r["seq"] for r in first] == sorted(r["seq"] for r in rows)[:5]  # in frozen order
    await _sent(app, settings, w.org, first[:3])
    await rewind_credit(app, c["id"], 5.0)  # credit never exceeds one second's worth
    assert await dispatcher.tick() == 3
    events = await dispatched_events(app, c["id"])
    assert len(events) == 8
    assert len({e["data"]["recipient_id"] for e in events}) == 8
    e = events[0]
    assert e["subject"] == e["data"]["recipient_id"] and e["tenantid"] == str(w.org)
    assert e["data"]["number_id"] == str(w.number)
    assert e["data"]["template"] == {"name": "sale", "language": "en_US", "category": "MARKETING"}
    assert e["data"]["parameters"] == {
        "parameters": [{"value": "{{contact.name}}", "default": "friend"}, "today"],
        "header_parameters": [],
        "button_parameters": [],
    }


async def _credit_at(app, campaign_id):
    async with app.state.db.transaction(bypass_rls=True) as s:
        return await s.scalar(
            text("SELECT credit_at FROM campaigns WHERE id = :id"), {"id": campaign_id}
        )


async def _tick_statements(app, dispatcher) -> tuple[int, list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        released = await dispatcher.tick()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return released, statements


async def test_a_tick_that_can_release_nothing_reads_little_and_writes_nothing(
    app, settings, client, tokens
):
    w, c = await _campaign(app, settings, client, tokens)
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"], 1.0)
    released, full_tick = await _tick_statements(app, dispatcher)
    assert released == 5
    # the window is full (5 in flight at 5/s): the messaging limit, the number's room and
    # the credit are neither read nor written
    await rewind_credit(app, c["id"], 5.0)
    before = await _credit_at(app, uuid.UUID(c["id"]))
    released, window_full = await _tick_statements(app, dispatcher)
    assert released == 0 and await _credit_at(app, uuid.UUID(c["id"])) == before
    assert not [s for s in window_full if s.lstrip().upper().startswith("UPDATE")]
    assert len(window_full) <= len(full_tick) - 3
    # not one send's credit yet (just ticked): the in-flight counts are not read either
    await _sent(app, settings, w.org, _status(await recipient_rows(app, c["id"]), "dispatched"))
    await dispatcher.tick()  # releases what the credit allows, and writes the credit
    released, no_credit = await _tick_statements(app, dispatcher)
    assert released == 0 and len(no_credit) < len(window_full)


async def test_the_rate_cap_is_below_the_numbers_throughput(app, settings, client, tokens):
    _, c = await _campaign(app, settings, client, tokens, throughput=80, rate_per_second=2)
    await rewind_credit(app, c["id"], 3.0)
    assert await app.state.dispatcher.tick() == 2


async def test_campaigns_on_one_number_share_its_window(app, settings, client, tokens):
    w, first = await _campaign(app, settings, client, tokens, contacts=8, throughput=5)
    second = await create_campaign(client, tokens, w, name="second")
    await start_campaign(client, tokens, w, second["id"])
    for c in (first, second):
        await rewind_credit(app, c["id"])
    assert await app.state.dispatcher.tick() == 5  # the number's second of sends, in all
    await _sent(app, settings, w.org, _status(await recipient_rows(app, first["id"]), "dispatched"))
    for c in (first, second):
        await rewind_credit(app, c["id"])
    assert await app.state.dispatcher.tick() == 5


async def test_pause_stops_new_sends_resume_goes_on_cancel_is_final(app, settings, client, tokens):
    w, c = await _campaign(app, settings, client, tokens)
    headers = tokens.headers(organization_id=w.org)
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 5
    r = await client.post(f"/v1/campaigns/{c['id']}/pause", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert r.json()["pause_reason"] == "user"
    await _sent(app, settings, w.org, _status(await recipient_rows(app, c["id"]), "dispatched"))
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 0
    assert (await client.post(f"/v1/campaigns/{c['id']}/pause", headers=headers)).status_code == 409
    r = await client.post(f"/v1/campaigns/{c['id']}/resume", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "running"
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 5
    r = await client.post(f"/v1/campaigns/{c['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    await rewind_credit(app, c["id"], 10)
    assert await dispatcher.tick() == 0
    rows = await recipient_rows(app, c["id"])
    assert Counter(r["status"] for r in rows) == {"sent": 5, "dispatched": 5, "cancelled": 2}
    [cancelled] = await emitted(app, "campaign.cancelled.v1")
    assert cancelled["data"]["not_sent"] == 2
    assert (
        await client.post(f"/v1/campaigns/{c['id']}/resume", headers=headers)
    ).status_code == 409
    stats = (await client.get(f"/v1/campaigns/{c['id']}/stats", headers=headers)).json()
    assert stats["by_status"]["cancelled"] == 2 and stats["status"] == "cancelled"


async def test_a_scheduled_campaign_waits_for_its_time(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=3, throughput=5)
    c = await create_campaign(client, tokens, w)
    await start_campaign(
        client, tokens, w, c["id"], scheduled_at=datetime.now(UTC) + timedelta(minutes=5)
    )
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"], 5)
    assert await dispatcher.tick() == 0
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            text("UPDATE campaigns SET scheduled_at = now() - interval '1 s' WHERE id = :id"),
            {"id": uuid.UUID(c["id"])},
        )
    assert await dispatcher.tick() == 0  # now running: its bucket starts empty
    got = await client.get(
        f"/v1/campaigns/{c['id']}", headers=tokens.headers(organization_id=w.org)
    )
    assert got.json()["status"] == "running"
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 3


async def test_the_messaging_limit_pauses_the_campaign(app, settings, client, tokens):
    w, c = await _campaign(app, settings, client, tokens, contacts=6, throughput=50)
    # TIER_250 (also what an unknown tier counts as): 247 recipients reached in 24 h ...
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            insert(initiations),
            [
                {
                    "organization_id": w.org,
                    "number_id": w.number,
                    "contact_id": uuid.uuid4(),
                    "fact": f"seed:{i}",
                }
                for i in range(247)
            ],
        )
    # ... and one conversation an agent started (conversations' event)
    conversation = uuid.uuid4()
    opened = internal(
        et.CONVERSATIONS_CONVERSATION_OPENED_V1,
        w.org,
        conversation,
        conversation_id=conversation,
        contact_id=uuid.uuid4(),
        number_id=w.number,
        opened_at=datetime.now(UTC),
        started_by=uuid.uuid4(),
    )
    await deliver(app, settings, opened, opened.model_copy(update={"id": uuid.uuid4()}))
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 2  # room for two more unique recipients
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 0
    headers = tokens.headers(organization_id=w.org)
    got = (await client.get(f"/v1/campaigns/{c['id']}", headers=headers)).json()
    assert got["status"] == "paused" and got["pause_reason"] == "messaging_limit"
    stats = (await client.get(f"/v1/campaigns/{c['id']}/stats", headers=headers)).json()
    assert stats["pause_reason"] == "messaging_limit" and stats["by_status"]["queued"] == 4
    [paused] = await emitted(app, "campaign.paused.v1")
    assert paused["data"]["reason"] == "messaging_limit"
    # a higher tier (whatsapp-gateway's number event) lets it go on when resumed
    await deliver(
        app,
        settings,
        internal(
            et.WHATSAPP_NUMBER_UPDATED_V1,
            w.org,
            w.number,
            number_id=w.number,
            display_phone_number="+1 555 0100",
            status="connected",
            quality_rating="GREEN",
            messaging_limit_tier="TIER_2K",
            changed=["messaging_limit_tier"],
        ),
    )
    assert (
        await client.post(f"/v1/campaigns/{c['id']}/resume", headers=headers)
    ).status_code == 200
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 4


async def test_a_disconnected_number_pauses_the_campaign(app, settings, client, tokens):
    w, c = await _campaign(app, settings, client, tokens, contacts=4)
    disconnected = internal(
        et.WHATSAPP_NUMBER_DISCONNECTED_V1,
        w.org,
        w.number,
        number_id=w.number,
        reason="token expired (190)",
    )
    await deliver(app, settings, disconnected)
    await rewind_credit(app, c["id"])
    assert await app.state.dispatcher.tick() == 0
    got = await client.get(
        f"/v1/campaigns/{c['id']}", headers=tokens.headers(organization_id=w.org)
    )
    assert got.json()["status"] == "paused"
    assert got.json()["pause_reason"] == "number_unavailable"
    assert {r["status"] for r in await recipient_rows(app, c["id"])} == {"queued"}


async def test_completes_when_every_recipient_is_done(app, settings, client, tokens):
    w, c = await _campaign(app, settings, client, tokens, contacts=3)
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 3
    await dispatcher.tick()
    headers = tokens.headers(organization_id=w.org)
    assert (await client.get(f"/v1/campaigns/{c['id']}", headers=headers)).json()["status"] == (
        "running"
    )
    await _sent(app, settings, w.org, await recipient_rows(app, c["id"]))
    await dispatcher.tick()
    done = (await client.get(f"/v1/campaigns/{c['id']}", headers=headers)).json()
    assert done["status"] == "completed" and done["finished_at"] is not None
    [completed] = await emitted(app, "campaign.completed.v1")
    assert completed["subject"] == c["id"]


async def test_a_send_whose_outcome_never_comes_ends_unconfirmed_and_the_campaign_completes(
    app, settings, client, tokens
):
    w, c = await _campaign(app, settings, client, tokens, contacts=3)
    dispatcher: Dispatcher = app.state.dispatcher
    await rewind_credit(app, c["id"])
    assert await dispatcher.tick() == 3
    rows = await recipient_rows(app, c["id"])
    await _sent(app, settings, w.org, rows[:2])
    lost = rows[2]  # accepted by conversations, then the Graph call's answer was lost
    message = uuid.uuid4()
    await deliver(app, settings, send_requested(w.org, lost["id"], message, uuid.uuid4()))
    headers = tokens.headers(organization_id=w.org)
    await dispatcher.tick()  # not given up on yet: it may still come
    assert (await client.get(f"/v1/campaigns/{c['id']}", headers=headers)).json()["status"] == (
        "running"
    )
    when = datetime.now(UTC) - timedelta(seconds=settings.campaign_unconfirmed_after_s + 1)
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(recipients).where(recipients.c.id == lost["id"]).values(dispatched_at=when)
        )
    await dispatcher.tick()
    done = (await client.get(f"/v1/campaigns/{c['id']}", headers=headers)).json()
    assert done["status"] == "completed"
    stats = (await client.get(f"/v1/campaigns/{c['id']}/stats", headers=headers)).json()
    assert stats["by_status"]["unconfirmed"] == 1 and stats["by_status"]["sent"] == 2
    assert stats["by_status"]["accepted"] == 0
    listed = await client.get(
        f"/v1/campaigns/{c['id']}/recipients?status=unconfirmed", headers=headers
    )
    assert [r["id"] for r in listed.json()["items"]] == [str(lost["id"])]
    assert len(await dispatched_events(app, c["id"])) == 3  # never dispatched again
    # Meta's status comes after all: the recipient moves on
    await deliver(app, settings, status_changed(w.org, message, uuid.uuid4(), "delivered"))
    [row] = [r for r in await recipient_rows(app, c["id"]) if r["id"] == lost["id"]]
    assert row["status"] == "delivered"


async def _take_dispatched(app, campaign_id, stop: asyncio.Event) -> None:
    """conversations, quickly: every dispatched recipient becomes sent (frees the window)."""
    while not stop.is_set():
        async with app.state.db.transaction(bypass_rls=True) as s:
            await s.execute(
                update(recipients)
                .where(recipients.c.campaign_id == campaign_id, recipients.c.status == "dispatched")
                .values(status="sent")
            )
        await asyncio.sleep(0.02)


async def test_killing_the_dispatcher_process_messages_nobody_twice_and_skips_nobody(
    app, settings, client, tokens, database_url
):
    """The dispatcher runs as a process of its own and is SIGKILLed at varying points
    mid-campaign, then started again, until the campaign is done: every recipient is
    dispatched exactly once (one outbox event each)."""
    w, c = await _campaign(app, settings, client, tokens, contacts=150, throughput=100)
    env = {
        **os.environ,
        "PYTAKE_ENV": "test",
        "PYTAKE_OWN_DATABASE_URL": database_url,
        "PYTAKE_CAMPAIGN_DISPATCH_TICK_S": "0.01",
        "PYTAKE_CAMPAIGN_IN_FLIGHT_WINDOW_S": "0.2",
        "PYTAKE_STATE_DIR": str(settings.state_dir),
    }
    script = Path(__file__).with_name("dispatch_process.py")
    stop = asyncio.Event()
    taker = asyncio.create_task(_take_dispatched(app, uuid.UUID(c["id"]), stop))
    kills = 0
    try:
        for round_ in range(30):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE
            )
            assert proc.stdout is not None
            await asyncio.wait_for(proc.stdout.readline(), 30)
            await asyncio.sleep(0.15 + (round_ % 5) * 0.1)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
            if not _status(await recipient_rows(app, c["id"]), "queued"):
                break
    finally:
        stop.set()
        await taker
    rows = await recipient_rows(app, c["id"])
    assert not _status(rows, "queued"), "the campaign did not finish"
    assert kills >= 2, "the dispatcher was never killed mid-campaign"
    events = await dispatched_events(app, c["id"])
    per_recipient = Counter(e["data"]["recipient_id"] for e in events)
    assert set(per_recipient) == {str(r["id"]) for r in rows}  # nobody skipped
    assert set(per_recipient.values()) == {1}  # nobody twice
    assert sorted(e["data"]["contact_id"] for e in events) == sorted(str(x) for x in w.contacts)
