"""Automatic messages (welcome, away by hours/holidays, auto-resolve) and timer triggers
(no agent reply, unassigned): armed and cancelled by events, fired by the timer worker."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pytake_automation.tables import timers

from .helpers import ALWAYS, NEVER, Chat, deliver, kinds, make_rule, org_settings, requested


@pytest.fixture
def org():
    return uuid.uuid4()


def texts(batches):
    return [a.get("text") for b in batches for a in b["actions"]]


async def test_welcome_once_on_the_customers_first_message(app, settings, org):
    chat = Chat(org)
    first = chat.says("oi")
    await deliver(
        app,
        settings,
        org_settings(org, business_hours=ALWAYS, welcome_message="Bem-vindo!"),
        chat.opened(),
        first,
        chat.says("tem alguém?"),
    )
    await deliver(app, settings, first.model_copy(update={"id": uuid.uuid4()}))
    [batch] = await requested(app, org)
    assert batch["source"]["kind"] == "schedule"
    assert texts([batch]) == ["Bem-vindo!"]


async def test_no_welcome_when_the_business_started_the_conversation(app, settings, org):
    chat = Chat(org)
    await deliver(
        app,
        settings,
        org_settings(org, welcome_message="Bem-vindo!"),
        chat.opened(started_by=uuid.uuid4()),
        chat.says("obrigado pelo aviso"),
    )
    assert await requested(app, org) == []


async def test_away_outside_hours_at_most_once_per_period(app, settings, client, tokens, org):
    chat = Chat(org)
    t0 = datetime.now(UTC)
    await deliver(
        app,
        settings,
        org_settings(
            org, business_hours=NEVER, welcome_message="Oi!", away_message="Voltamos às 9h."
        ),
        chat.opened(),
        chat.says("oi", at=t0),
        chat.says("alô?", at=t0 + timedelta(minutes=5)),
    )
    # a first message outside hours gets the away message, not the welcome; once per period
    assert texts(await requested(app, org)) == ["Voltamos às 9h."]
    await deliver(
        app, settings, chat.says("e agora?", at=t0 + timedelta(hours=13))
    )  # default period 12 h
    assert texts(await requested(app, org)) == ["Voltamos às 9h."] * 2
    r = await client.patch(
        "/v1/automation/settings",
        json={"away_message_interval_minutes": 1},
        headers=tokens.headers(organization_id=org, role="org_admin"),
    )
    assert r.json()["away_message_interval_minutes"] == 1
    await deliver(app, settings, chat.says("!", at=t0 + timedelta(hours=13, minutes=2)))
    assert len(await requested(app, org)) == 3


async def test_a_holiday_is_closed(app, settings, org):
    today = datetime.now(UTC).date().isoformat()
    chat = Chat(org)
    await deliver(
        app,
        settings,
        org_settings(
            org, business_hours=ALWAYS, holidays=[{"date": today}], away_message="Feriado"
        ),
        chat.says("oi"),
    )
    assert texts(await requested(app, org)) == ["Feriado"]


async def due_now(app, kind):
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(timers)
            .where(timers.c.kind == kind)
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def timer_rows(app, org):
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (await s.execute(select(timers).where(timers.c.organization_id == org))).all()


async def test_idle_conversation_is_auto_resolved_with_the_closing_message(
    app, settings, client, tokens, org
):
    await client.patch(
        "/v1/automation/settings",
        json={"auto_resolve_message": "Encerrando, até logo!"},
        headers=tokens.headers(organization_id=org, role="org_admin"),
    )
    chat = Chat(org)
    await deliver(
        app,
        settings,
        org_settings(org, business_hours=ALWAYS, auto_close_after_hours=2),
        chat.opened(),
        chat.says("oi"),
        chat.replied(),
    )
    [timer] = await timer_rows(app, org)
    assert timer.kind == "idle" and timer.due_at > datetime.now(UTC) + timedelta(
        hours=1, minutes=59
    )
    await due_now(app, "idle")
    assert await app.state.timers.fire_due() == 1
    assert await app.state.timers.fire_due() == 0
    [batch] = await requested(app, org)
    assert kinds([batch]) == [["send_text", "set_status"]]
    assert batch["actions"][0]["text"] == "Encerrando, até logo!"
    assert batch["actions"][1]["status"] == "resolved"
    assert await timer_rows(app, org) == []


async def test_no_agent_reply_fires_unless_an_agent_answers(app, settings, client, tokens, org):
    rule = await make_rule(
        client,
        tokens,
        org,
        trigger={"type": "no_agent_reply", "minutes": 15},
        actions=[{"type": "set_priority", "priority": "urgent"}],
    )
    answered, waiting = Chat(org), Chat(org)
    await deliver(app, settings, answered.says("oi"), waiting.says("oi"), waiting.says("??"))
    assert {t.conversation_id for t in await timer_rows(app, org)} == {answered.id, waiting.id}
    await deliver(app, settings, answered.replied("automation"))  # automation is not an agent
    assert len(await timer_rows(app, org)) == 2
    await deliver(app, settings, answered.replied("user"))
    [timer] = await timer_rows(app, org)
    assert (timer.conversation_id, timer.source_key) == (waiting.id, f"rule:{rule['id']}")
    await due_now(app, "no_agent_reply")
    await app.state.timers.fire_due()
    [batch] = await requested(app, org)
    assert batch["conversation_id"] == str(waiting.id) and kinds([batch]) == [["set_priority"]]


async def test_unassigned_for_n_minutes(app, settings, client, tokens, org):
    await make_rule(
        client,
        tokens,
        org,
        trigger={"type": "unassigned", "minutes": 5},
        actions=[{"type": "assign", "department_id": str(uuid.uuid4())}],
    )
    taken, left = Chat(org), Chat(org)
    await deliver(app, settings, taken.opened(), left.opened(), taken.assigned(uuid.uuid4()))
    assert [t.conversation_id for t in await timer_rows(app, org)] == [left.id]
    await due_now(app, "unassigned")
    await app.state.timers.fire_due()
    await app.state.timers.fire_due()
    [batch] = await requested(app, org)
    assert batch["conversation_id"] == str(left.id)


async def test_resolving_cancels_the_conversations_timers(app, settings, client, tokens, org):
    await make_rule(client, tokens, org, trigger={"type": "no_agent_reply", "minutes": 15})
    chat = Chat(org)
    await deliver(
        app, settings, org_settings(org, auto_close_after_hours=1), chat.opened(), chat.says("oi")
    )
    assert len(await timer_rows(app, org)) == 2
    await deliver(app, settings, chat.moved("open", "resolved"))
    assert await timer_rows(app, org) == []


async def test_two_timer_workers_fire_each_due_timer_once(app, settings, client, tokens, org):
    import asyncio

    from pytake_automation.timers import TimerWorker

    await make_rule(
        client,
        tokens,
        org,
        trigger={"type": "no_agent_reply", "minutes": 1},
        actions=[{"type": "add_note", "text": "late"}],
    )
    chats = [Chat(org) for _ in range(12)]
    await deliver(app, settings, *(c.says("oi") for c in chats))
    await due_now(app, "no_agent_reply")
    triggers = app.state.timers.fire
    a, b = (TimerWorker(app.state.db, triggers, 5, 0.1) for _ in range(2))
    fired = 0
    while True:
        counts = await asyncio.gather(a.fire_due(), b.fire_due())
        fired += sum(counts)
        if not any(counts):
            break
    assert fired == 12
    assert sorted(b["conversation_id"] for b in await requested(app, org)) == sorted(
        str(c.id) for c in chats
    )
