"""automation's actions_requested applied by conversations: sends (window, block list),
assignment (agent, department round-robin), priority, status, notes; each action once."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pytake_common.events import CloudEvent
from pytake_conversations.automation_actions import automation_handlers
from pytake_conversations.tables import automation_actions

from .helpers import (
    Customer,
    deliver,
    department,
    emitted,
    message_rows,
    opened,
    platform_event,
    set_conversation,
    user_created,
)

HANDLE = automation_handlers(24.0)


def requested(org, conv, *actions, rule=None, contact=None) -> CloudEvent:
    rule = rule or uuid.uuid4()
    return CloudEvent(
        source="pytake/automation",
        type="pytake.automation.session.actions_requested.v1",
        subject=str(conv["id"]),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "conversation_id": str(conv["id"]),
            "contact_id": str(contact or conv["contact_id"]),
            "number_id": str(conv["number_id"]),
            "source": {"kind": "rule", "id": str(rule), "run_id": str(uuid.uuid4())},
            "actions": [{"action_id": str(uuid.uuid4()), **a} for a in actions],
        },
    )


async def apply(app, event: CloudEvent) -> None:
    async with app.state.db.transaction(organization_id=event.tenantid) as s:
        await HANDLE[event.type](s, event)


async def outcomes(app, org) -> dict[str, str]:
    async with app.state.db.transaction(organization_id=org) as s:
        rows = (await s.execute(select(automation_actions))).all()
    return {r.type: r.outcome for r in rows}


async def test_inbound_appended_carries_text_and_the_chosen_reply(app):
    org = uuid.uuid4()
    customer = Customer(org)
    await deliver(app, customer.says("Olá, quero ajuda"))
    event = customer.says("x")
    event.data.update(
        type="interactive",
        text="Sim",
        content={
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Sim"}},
        },
    )
    await deliver(app, event)
    quick = customer.says("x")
    quick.data.update(
        type="button",
        text="Stop",
        content={"type": "button", "button": {"payload": "STOP", "text": "Stop"}},
    )
    await deliver(app, quick)
    appended = [e["data"] for e in await emitted(app, org, "message.appended.v1")]
    assert [(a["text"], a["reply"], a["sender_type"]) for a in appended] == [
        ("Olá, quero ajuda", None, None),
        ("Sim", {"kind": "button", "id": "yes", "title": "Sim"}, None),
        ("Stop", {"kind": "button", "id": "STOP", "title": "Stop"}, None),
    ]


async def test_send_text_in_the_window_once_with_automation_priority(app):
    org, rule = uuid.uuid4(), uuid.uuid4()
    conv = await opened(app, org)
    event = requested(org, conv, {"type": "send_text", "text": "Bem-vindo!"}, rule=rule)
    await apply(app, event)
    await apply(app, event.model_copy(update={"id": uuid.uuid4()}))  # republished: same actions
    sent = [m for m in await message_rows(app, org) if m["direction"] == "outbound"]
    assert len(sent) == 1
    assert (sent[0]["text"], sent[0]["sender_type"], sent[0]["sent_by"], sent[0]["status"]) == (
        "Bem-vindo!",
        "automation",
        rule,
        "pending",
    )
    [send] = await emitted(app, org, "message.send_requested.v1")
    assert (send["data"]["priority"], send["data"]["text"]["body"]) == ("automation", "Bem-vindo!")
    outbound = [
        e["data"]
        for e in await emitted(app, org, "message.appended.v1")
        if e["data"]["direction"] == "outbound"
    ]
    assert [(a["sender_type"], a["sender_id"], a["text"]) for a in outbound] == [
        ("automation", str(rule), "Bem-vindo!")
    ]


async def test_text_outside_the_window_is_recorded_failed_never_sent(app):
    org = uuid.uuid4()
    conv = await opened(app, org)
    await set_conversation(
        app, org, conv["id"], last_inbound_at=datetime.now(UTC) - timedelta(hours=25)
    )
    await apply(
        app,
        requested(
            org,
            conv,
            {"type": "send_text", "text": "late"},
            {
                "type": "send_interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "?"},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
                },
            },
        ),
    )
    failed = [m for m in await message_rows(app, org) if m["direction"] == "outbound"]
    assert [(m["status"], m["error_detail"]) for m in failed] == [("failed", "window_closed")] * 2
    assert await emitted(app, org, "message.send_requested.v1") == []
    assert await outcomes(app, org) == {
        "send_text": "window_closed",
        "send_interactive": "window_closed",
    }


async def test_blocked_contact_is_never_sent(app):
    org = uuid.uuid4()
    customer = Customer(org)
    conv = await opened(app, org, customer)
    await deliver(
        app,
        platform_event(
            "pytake.contacts.contact.blocked.v1",
            org,
            {
                "contact_id": str(customer.contact_id),
                "reason": None,
                "blocked_at": datetime.now(UTC).isoformat(),
                "blocked_by": str(uuid.uuid4()),
            },
        ),
    )
    await apply(app, requested(org, conv, {"type": "send_text", "text": "hi"}))
    assert [m for m in await message_rows(app, org) if m["direction"] == "outbound"] == []
    assert await outcomes(app, org) == {"send_text": "contact_blocked"}


async def test_assign_priority_status_note_in_order_with_the_actor(app):
    org, rule = uuid.uuid4(), uuid.uuid4()
    a1, a2, dept = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for agent in (a1, a2):
        await deliver(app, user_created(org, agent))
    await deliver(app, department(org, dept, [a1, a2]))
    conv = await opened(app, org)
    await apply(
        app,
        requested(
            org,
            conv,
            {"type": "assign", "department_id": str(dept)},
            {"type": "set_priority", "priority": "urgent"},
            {"type": "add_note", "text": "VIP customer"},
            {"type": "add_tag", "tag_name": "vip"},  # contacts' action: ignored here
            {"type": "set_status", "status": "resolved"},
            rule=rule,
        ),
    )
    [assigned] = await emitted(app, org, "conversation.assigned.v1")
    assert assigned["data"]["department_id"] == str(dept)
    assert assigned["data"]["assignee_id"] in (str(a1), str(a2))
    assert (assigned["data"]["actor_type"], assigned["data"]["actor_id"]) == (
        "automation",
        str(rule),
    )
    [moved] = await emitted(app, org, "conversation.status_changed.v1")
    assert (moved["data"]["new_status"], moved["data"]["actor_id"]) == ("resolved", str(rule))
    notes = [m for m in await message_rows(app, org) if m["direction"] == "note"]
    assert [(n["text"], n["sender_type"]) for n in notes] == [("VIP customer", "automation")]
    async with app.state.db.transaction(organization_id=org) as s:
        from pytake_conversations.tables import conversations

        row = (await s.execute(select(conversations))).mappings().one()
    assert (row["priority"], row["status"]) == ("urgent", "resolved")
    assert await outcomes(app, org) == {
        "assign": "applied",
        "set_priority": "applied",
        "add_note": "applied",
        "set_status": "applied",
    }


async def test_a_failing_action_does_not_stop_the_next_and_another_orgs_conversation_is_not_found(
    app,
):
    org = uuid.uuid4()
    conv = await opened(app, org)
    await apply(
        app,
        requested(
            org,
            conv,
            {"type": "assign", "agent_id": str(uuid.uuid4())},
            {"type": "set_priority", "priority": "high"},
        ),
    )
    assert await outcomes(app, org) == {"assign": "invalid_assignee", "set_priority": "applied"}
    other = uuid.uuid4()
    await apply(app, requested(other, conv, {"type": "set_priority", "priority": "low"}))
    assert await outcomes(app, other) == {"set_priority": "not_found"}


async def test_send_template_outside_the_window_is_sent_filled_from_the_contact(app):
    from .test_start import Setup

    org = uuid.uuid4()
    setup = await Setup(app, org).ready(attributes={"order": "B-9"})
    conv = await opened(app, org, setup.customer())
    await set_conversation(
        app, org, conv["id"], last_inbound_at=datetime.now(UTC) - timedelta(days=3)
    )
    await apply(
        app,
        requested(
            org,
            conv,
            {
                "type": "send_template",
                "name": "order_update",
                "language": "en_US",
                "parameters": ["{{contact.name}}", {"value": "{{contact.attributes.order}}"}],
            },
            {"type": "send_template", "name": "nope", "language": "en_US"},
        ),
    )
    [send] = await emitted(app, org, "message.send_requested.v1")
    assert (send["data"]["type"], send["data"]["priority"]) == ("template", "automation")
    params = send["data"]["payload"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Maria", "B-9"]
    async with app.state.db.transaction(organization_id=org) as s:
        rows = (await s.execute(select(automation_actions.c.outcome))).scalars().all()
    assert sorted(rows) == ["applied", "template_not_found"]
