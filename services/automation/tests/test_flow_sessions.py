"""Flow sessions on conversations: replies, versions, stop rules, timeouts, redelivery."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, update

from pytake_automation import flows
from pytake_automation.actions import Target
from pytake_automation.context import ContactView, ConversationView, TriggerContext
from pytake_automation.flows import sessions
from pytake_automation.flows.http import FlowHttpClient
from pytake_automation.flows.tables import flow_sessions
from pytake_automation.tables import timers
from pytake_common.mechanics import outbox
from pytake_common.retention import RetentionWorker

from .helpers import deliver, internal, now
from .test_flows_api import URL, four_steps

ACTIONS = "pytake.automation.session.actions_requested.v1"


class Conversation:
    """One conversation of one organization, its events and what automation asked."""

    def __init__(self, app: Any, settings: Any, org: uuid.UUID | None = None) -> None:
        self.app, self.settings = app, settings
        self.org = org or uuid.uuid4()
        self.id, self.contact = uuid.uuid4(), uuid.uuid4()
        self.number = uuid.uuid4()
        self.seen = 0

    @property
    def target(self) -> Target:
        return Target(self.org, self.id, self.contact, self.number)

    def appended(self, direction: str, **data: Any) -> Any:
        message = uuid.uuid4()
        return internal(
            "pytake.conversations.message.appended.v1",
            self.org,
            message,
            message_id=message,
            conversation_id=self.id,
            contact_id=self.contact,
            direction=direction,
            type="interactive" if "reply" in data else "text",
            created_at=now(),
            **data,
        )

    async def says(self, text: str) -> list[dict[str, Any]]:
        await deliver(self.app, self.settings, self.appended("inbound", text=text))
        return await self.new_actions()

    async def presses(self, button: str, title: str) -> list[dict[str, Any]]:
        reply = {"kind": "button", "id": button, "title": title}
        event = self.appended("inbound", text=title, reply=reply)
        await deliver(self.app, self.settings, event)
        return await self.new_actions()

    async def start(self, flow_id: str, trigger: str = "t1") -> uuid.UUID | None:
        async with self.app.state.db.transaction(organization_id=self.org) as s:
            ctx = TriggerContext(
                trigger="message_received",
                trigger_key=trigger,
                at=now(),
                conversation=ConversationView(
                    self.id,
                    self.org,
                    self.contact,
                    self.number,
                    "open",
                    "normal",
                    None,
                    None,
                    1,
                    False,
                ),
                contact=ContactView(self.contact, name="Ana"),
                business_open=True,
            )
            return await flows.start_flow(s, ctx, uuid.UUID(flow_id))

    async def requests(self) -> list[dict[str, Any]]:
        async with self.app.state.db.transaction(bypass_rls=True) as s:
            rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars()
            return [
                e
                for e in rows
                if e["type"] == ACTIONS and e["data"]["conversation_id"] == str(self.id)
            ]

    async def new_actions(self) -> list[dict[str, Any]]:
        found = await self.requests()
        fresh, self.seen = found[self.seen :], len(found)
        return [a for e in fresh for a in e["data"]["actions"]]

    async def session(self) -> Any:
        async with self.app.state.db.transaction(bypass_rls=True) as s:
            stmt = select(flow_sessions).where(flow_sessions.c.conversation_id == self.id)
            return (await s.execute(stmt.order_by(flow_sessions.c.started_at))).all()[-1]


async def published(client: Any, tokens: Any, org: uuid.UUID, definition: dict[str, Any]) -> str:
    h = tokens.headers(organization_id=org)
    r = await client.post(URL, json={"name": "f", "definition": definition}, headers=h)
    flow_id = str(r.json()["id"])
    assert (await client.post(f"{URL}/{flow_id}/publish", headers=h)).status_code == 201
    return flow_id


def kinds(actions: list[dict[str, Any]]) -> list[str]:
    return [a["type"] for a in actions]


async def test_four_steps_with_buttons_end_in_a_handoff(app, settings, client, tokens):
    talk = Conversation(app, settings)
    flow_id = await published(client, tokens, talk.org, four_steps())
    session_id = await talk.start(flow_id)
    assert session_id is not None
    [request] = await talk.requests()
    assert request["data"]["source"]["kind"] == "flow"
    assert request["data"]["source"]["id"] == flow_id
    assert request["subject"] == str(talk.id) and request["data"]["number_id"] == str(talk.number)
    first = await talk.new_actions()
    assert kinds(first) == ["send_interactive"]
    assert first[0]["interactive"]["action"]["buttons"][1]["reply"]["id"] == "support"

    assert [a["text"] for a in await talk.presses("support", "Support")] == ["Your name?"]
    assert [a["text"] for a in await talk.says("Ana")] == ["Thanks Ana. Your e-mail?"]
    assert [a["text"] for a in await talk.says("nope")] == [
        "That is not an e-mail address.",
        "Thanks Ana. Your e-mail?",
    ]
    last = await talk.says("ana@example.com")
    assert kinds(last) == ["set_attribute", "send_text", "add_note", "assign"]
    assert last[2]["text"] == "Chatbot summary\nTopic: Support\nName: Ana\nE-mail: ana@example.com"
    assert last[3]["department_id"] == four_steps()["nodes"][3]["department_id"]
    row = await talk.session()
    assert (row.status, row.end_reason, row.version) == ("ended", "handoff", 1)
    # an ended session takes nothing more
    assert await talk.says("hello?") == []


async def test_redelivered_replies_act_once(app, settings, client, tokens):
    talk = Conversation(app, settings)
    flow_id = await published(client, tokens, talk.org, four_steps())
    await talk.start(flow_id)
    await talk.new_actions()
    reply = talk.appended(
        "inbound", text="Sales", reply={"kind": "button", "id": "sales", "title": "Sales"}
    )
    same_fact = reply.model_copy(update={"id": uuid.uuid4()})
    await deliver(app, settings, reply, reply, same_fact)
    assert [a["text"] for a in await talk.new_actions()] == ["Your name?"]
    assert (await talk.session()).state["node_id"] == "name"
    # the same trigger does not start the flow again
    assert await talk.start(flow_id) is None
    assert await talk.new_actions() == []


async def test_one_active_flow_per_conversation(app, settings, client, tokens):
    talk = Conversation(app, settings)
    first = await published(client, tokens, talk.org, four_steps())
    second = await published(client, tokens, talk.org, four_steps("Other flow"))
    assert await talk.start(first, "t1") is not None
    assert await talk.start(second, "t2") is None
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(flow_sessions.c.flow_id))).scalars().all()
    assert [str(r) for r in rows] == [first]


async def test_a_new_version_applies_to_new_sessions_only(app, settings, client, tokens):
    org = uuid.uuid4()
    h = tokens.headers(organization_id=org)
    old_talk, new_talk = Conversation(app, settings, org), Conversation(app, settings, org)
    flow_id = await published(client, tokens, org, four_steps("Version one?"))
    await old_talk.start(flow_id)
    changed = four_steps("Version two?")
    changed["nodes"][1]["prompt"]["text"] = "What is your full name?"
    await client.patch(f"{URL}/{flow_id}", json={"definition": changed}, headers=h)
    assert (await client.post(f"{URL}/{flow_id}/publish", headers=h)).json()["version"] == 2
    await new_talk.start(flow_id)
    [new_prompt] = await new_talk.new_actions()
    assert new_prompt["interactive"]["body"]["text"] == "Version two?"
    await old_talk.new_actions()
    assert [a["text"] for a in await old_talk.presses("sales", "Sales")] == ["Your name?"]
    assert (await old_talk.session()).version == 1 and (await new_talk.session()).version == 2


async def test_an_agent_reply_or_an_assignment_to_an_agent_stops_it(app, settings, client, tokens):
    org = uuid.uuid4()
    flow_id = await published(client, tokens, org, four_steps())
    replied, assigned, bot = (Conversation(app, settings, org) for _ in range(3))
    for talk in (replied, assigned, bot):
        await talk.start(flow_id)
        await talk.new_actions()
    # the flow's own messages do not stop it
    await deliver(app, settings, bot.appended("outbound", sender_type="automation"))
    assert (await bot.session()).status == "active"
    await deliver(
        app, settings, replied.appended("outbound", sender_type="user", sender_id=str(uuid.uuid4()))
    )
    row = await replied.session()
    assert (row.status, row.end_reason) == ("ended", "agent_replied")
    event = internal(
        "pytake.conversations.conversation.assigned.v1",
        org,
        assigned.id,
        conversation_id=assigned.id,
        contact_id=assigned.contact,
        assignee_id=uuid.uuid4(),
        at=now(),
    )
    await deliver(app, settings, event)
    row = await assigned.session()
    assert (row.status, row.end_reason) == ("ended", "assigned_to_agent")
    # nothing was said to the customer, and the wait's timer is gone
    assert await replied.new_actions() == [] and await assigned.new_actions() == []
    async with app.state.db.transaction(bypass_rls=True) as s:
        left = (await s.execute(select(timers.c.conversation_id))).scalars().all()
    assert set(left) == {bot.id}


async def test_a_stop_word_ends_it(app, settings, client, tokens):
    talk = Conversation(app, settings)
    definition = four_steps() | {"stop_message": "Ok, a person will take it from here."}
    flow_id = await published(client, tokens, talk.org, definition)
    await talk.start(flow_id)
    await talk.new_actions()
    said = await talk.says("STOP!")
    assert [a["text"] for a in said] == ["Ok, a person will take it from here."]
    row = await talk.session()
    assert (row.status, row.end_reason) == ("ended", "stop_word")


async def _due_now(app: Any, conversation_id: uuid.UUID) -> None:
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(timers)
            .where(timers.c.conversation_id == conversation_id)
            .values(due_at=now() - timedelta(seconds=1))
        )


async def test_no_reply_within_the_timeout_takes_the_timeout_branch(app, settings, client, tokens):
    talk = Conversation(app, settings)
    definition = {
        "start": "q",
        "nodes": [
            {
                "id": "q",
                "type": "ask",
                "prompt": {"kind": "text", "text": "Still there?"},
                "timeout_seconds": 60,
                "on_timeout": "bye",
                "next": "bye",
            },
            {"id": "bye", "type": "end", "message": "Talk later!", "resolve": True},
        ],
    }
    flow_id = await published(client, tokens, talk.org, definition)
    await talk.start(flow_id)
    await talk.new_actions()
    async with app.state.db.transaction(bypass_rls=True) as s:
        [timer] = (await s.execute(select(timers))).all()
    assert (timer.kind, timer.armed_by) == ("flow_wait", "1")
    assert timedelta(seconds=50) < timer.due_at - now() <= timedelta(seconds=60)
    assert await app.state.timers.fire_due() == 0  # not due yet
    await _due_now(app, talk.id)
    assert await app.state.timers.fire_due() == 1
    actions = await talk.new_actions()
    assert kinds(actions) == ["send_text", "set_status"] and actions[0]["text"] == "Talk later!"
    assert (await talk.session()).end_reason == "completed"
    assert await app.state.timers.fire_due() == 0


async def test_a_timeout_that_leads_to_another_wait_arms_it(app, settings, client, tokens):
    talk = Conversation(app, settings)
    nudge = {
        "id": "nudge",
        "type": "ask",
        "prompt": {"kind": "text", "text": "Hello? Still there?"},
        "timeout_seconds": 120,
        "next": "bye",
    }
    definition = {
        "start": "q",
        "nodes": [
            {
                "id": "q",
                "type": "ask",
                "prompt": {"kind": "text", "text": "Order number?"},
                "timeout_seconds": 60,
                "on_timeout": "nudge",
                "next": "bye",
            },
            nudge,
            {"id": "bye", "type": "end"},
        ],
    }
    flow_id = await published(client, tokens, talk.org, definition)
    await talk.start(flow_id)
    await talk.new_actions()
    await _due_now(app, talk.id)
    assert await app.state.timers.fire_due() == 1
    assert [a["text"] for a in await talk.new_actions()] == ["Hello? Still there?"]
    async with app.state.db.transaction(bypass_rls=True) as s:
        [timer] = (await s.execute(select(timers))).all()
    assert timer.armed_by == "2" and timer.due_at - now() > timedelta(seconds=100)
    await _due_now(app, talk.id)
    assert await app.state.timers.fire_due() == 1
    assert (await talk.session()).end_reason == "timeout"


async def test_a_stale_timer_does_nothing(app, settings, client, tokens):
    talk = Conversation(app, settings)
    flow_id = await published(client, tokens, talk.org, four_steps())
    await talk.start(flow_id)
    await talk.presses("sales", "Sales")  # the wait moved on: the timer was re-armed
    await talk.new_actions()
    async with app.state.db.transaction(bypass_rls=True) as s:
        [timer] = (await s.execute(select(timers))).all()
        assert timer.armed_by == "2"
        await s.execute(update(timers).values(armed_by="1", due_at=now() - timedelta(seconds=1)))
    assert await app.state.timers.fire_due() == 1
    assert await talk.new_actions() == []
    assert (await talk.session()).state["node_id"] == "name"


@pytest.fixture
async def orders_api() -> AsyncIterator[str]:
    async def order(request: web.Request) -> web.StreamResponse:
        return web.json_response({"order": {"id": request.match_info["id"], "status": "shipped"}})

    api = web.Application()
    api.router.add_get("/orders/{id}", order)
    runner = web.AppRunner(api)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = FlowHttpClient(allow_loopback=True)
    sessions.configure_http(client)
    yield f"http://127.0.0.1:{port}"
    await client.close()
    sessions.configure_http(FlowHttpClient())
    await runner.cleanup()


async def test_an_http_node_maps_the_answer_into_the_conversation(
    app, settings, client, tokens, orders_api
):
    talk = Conversation(app, settings)
    h = tokens.headers(organization_id=talk.org)
    await client.put("/v1/automation/flow-http-hosts", json={"hosts": ["127.0.0.1"]}, headers=h)
    definition = {
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "ask",
                "prompt": {"kind": "text", "text": "Order number?"},
                "validate": {"kind": "number"},
                "store": {"target": "variable", "key": "order"},
                "next": "call",
            },
            {
                "id": "call",
                "type": "http",
                "url": orders_api + "/orders/{{order}}",
                "map": {"status": "$.order.status"},
                "next": "say",
                "on_error": "sorry",
            },
            {"id": "say", "type": "end", "message": "Order {{order}} is {{status}}."},
            {"id": "sorry", "type": "end", "message": "I cannot check orders now."},
        ],
    }
    flow_id = await published(client, tokens, talk.org, definition)
    await talk.start(flow_id)
    await talk.new_actions()
    assert [a["text"] for a in await talk.says("42")] == ["Order 42 is shipped."]
    # the host leaves the allow-list: the next session's call is refused, the error path runs
    await client.put("/v1/automation/flow-http-hosts", json={"hosts": []}, headers=h)
    other = Conversation(app, settings, talk.org)
    await other.start(flow_id)
    await other.new_actions()
    assert [a["text"] for a in await other.says("7")] == ["I cannot check orders now."]


async def test_deleting_a_flow_ends_its_sessions(app, settings, client, tokens):
    talk = Conversation(app, settings)
    flow_id = await published(client, tokens, talk.org, four_steps())
    await talk.start(flow_id)
    h = tokens.headers(organization_id=talk.org)
    assert (await client.delete(f"{URL}/{flow_id}", headers=h)).status_code == 204
    row = await talk.session()
    assert (row.status, row.end_reason) == ("ended", "flow_deleted")
    await talk.new_actions()
    assert await talk.says("Sales") == []


async def test_an_unpublished_or_foreign_flow_does_not_start(app, settings, client, tokens):
    talk = Conversation(app, settings)
    h = tokens.headers(organization_id=talk.org)
    r = await client.post(URL, json={"name": "draft", "definition": four_steps()}, headers=h)
    with pytest.raises(flows.FlowNotPublished):
        await talk.start(r.json()["id"])
    foreign = await published(client, tokens, uuid.uuid4(), four_steps())
    with pytest.raises(flows.FlowNotPublished):
        await talk.start(foreign)


async def test_a_keyword_rule_starts_the_flow_and_the_flow_then_takes_the_messages(
    app, settings, client, tokens
):
    talk = Conversation(app, settings)
    h = tokens.headers(organization_id=talk.org)
    flow_id = await published(client, tokens, talk.org, four_steps())
    rule = {
        "name": "help starts triage",
        "trigger": {"type": "message_received"},
        "conditions": [{"type": "text_contains", "words": ["help"]}],
        "actions": [{"type": "start_flow", "flow_id": flow_id}],
    }
    r = await client.post("/v1/automation/rules", json=rule, headers=h)
    assert r.status_code == 201, r.text
    opened = internal(
        "pytake.conversations.conversation.opened.v1",
        talk.org,
        talk.id,
        conversation_id=talk.id,
        contact_id=talk.contact,
        number_id=talk.number,
        opened_at=now(),
    )
    await deliver(app, settings, opened)
    first = await talk.says("I need help")
    assert kinds(first) == ["send_interactive"]  # the trigger is not the first answer
    # "help" again is an answer to the flow now (not an option: asked again), not a trigger
    again = await talk.says("help")
    assert [a["type"] for a in again] == ["send_text", "send_interactive"]
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert len((await s.execute(select(flow_sessions.c.id))).all()) == 1


async def test_resolving_the_conversation_ends_the_flow(app, settings, client, tokens):
    talk = Conversation(app, settings)
    flow_id = await published(client, tokens, talk.org, four_steps())
    await talk.start(flow_id)
    event = internal(
        "pytake.conversations.conversation.status_changed.v1",
        talk.org,
        talk.id,
        conversation_id=talk.id,
        contact_id=talk.contact,
        old_status="open",
        new_status="resolved",
        at=now(),
    )
    await deliver(app, settings, event)
    row = await talk.session()
    assert (row.status, row.end_reason) == ("ended", "conversation_resolved")


async def test_ended_sessions_are_pruned_after_the_retention_active_ones_never(
    app, settings, client, tokens
):
    org = uuid.uuid4()
    flow_id = await published(client, tokens, org, four_steps())
    ended, running = Conversation(app, settings, org), Conversation(app, settings, org)
    await ended.start(flow_id)
    await running.start(flow_id)
    await deliver(app, settings, ended.appended("outbound", sender_type="user"))
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(flow_sessions)
            .where(flow_sessions.c.status == "ended")
            .values(ended_at=now() - timedelta(days=31))
        )
        await s.execute(update(flow_sessions).values(started_at=now() - timedelta(days=60)))
    worker = RetentionWorker(app.state.db, settings, [sessions.retention(30 * 86400)])
    assert (await worker.prune())["flow_sessions"] == 1
    async with app.state.db.transaction(bypass_rls=True) as s:
        left = (await s.execute(select(flow_sessions.c.conversation_id))).scalars().all()
    assert left == [running.id]
