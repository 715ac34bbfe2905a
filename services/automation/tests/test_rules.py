"""Rules on conversation events: triggers, conditions, actions, order, stop-processing,
loop protection, the per-minute cap, redelivery, isolation, the in-memory rule cache."""

import uuid

import pytest
from sqlalchemy import select

from .helpers import ALWAYS, NEVER, Chat, deliver, kinds, make_rule, org_settings, requested


@pytest.fixture
def org():
    return uuid.uuid4()


KEYWORD = {"type": "text_contains", "words": ["cancelar", "reembolso"]}


async def test_keyword_rule_tags_and_assigns_once_per_message(app, settings, client, tokens, org):
    dept = uuid.uuid4()
    rule = await make_rule(
        client,
        tokens,
        org,
        name="cancel",
        conditions=[KEYWORD],
        actions=[
            {"type": "add_tag", "tag_name": "churn-risk"},
            {"type": "assign", "department_id": str(dept)},
        ],
    )
    chat = Chat(org)
    hit = chat.says("Quero CANCELAR, por favor")
    await deliver(app, settings, chat.opened(), hit, chat.says("obrigado"))
    await deliver(app, settings, hit)  # the same event again
    await deliver(app, settings, hit.model_copy(update={"id": uuid.uuid4()}))  # same fact, new id
    [batch] = await requested(app, org)
    assert [a["type"] for a in batch["actions"]] == ["add_tag", "assign"]
    assert batch["actions"][1]["department_id"] == str(dept)
    assert batch["source"]["kind"] == "rule" and batch["source"]["id"] == rule["id"]
    assert (batch["conversation_id"], batch["contact_id"]) == (str(chat.id), str(chat.contact_id))
    assert batch["number_id"] == str(chat.number_id)
    r = await client.get(
        f"/v1/automation/rules/{rule['id']}/runs", headers=tokens.headers(organization_id=org)
    )
    assert [(x["outcome"], x["trigger"]) for x in r.json()["items"]] == [
        ("acted", "message_received")
    ]


async def test_action_ids_are_derived_from_trigger_rule_and_index(
    app, settings, client, tokens, org
):
    from pytake_automation.actions import action_id

    rule = await make_rule(
        client,
        tokens,
        org,
        actions=[{"type": "send_text", "text": "a"}, {"type": "send_text", "text": "b"}],
    )
    said = Chat(org).says("x")
    await deliver(app, settings, said)
    [batch] = await requested(app, org)
    key = f"message:{said.subject}"
    assert [a["action_id"] for a in batch["actions"]] == [
        str(action_id(f"rule:{rule['id']}", key, i)) for i in range(2)
    ]


@pytest.mark.parametrize(
    ("condition", "text", "hit"),
    [
        ({"type": "contact_tag", "tag_id": "TAG"}, "oi", True),
        ({"type": "contact_tag", "tag_id": "TAG", "present": False}, "oi", False),
        ({"type": "contact_attribute", "key": "plan", "value": "GOLD"}, "oi", True),
        ({"type": "contact_attribute", "key": "plan", "op": "not_exists"}, "oi", False),
        ({"type": "business_hours", "state": "open"}, "oi", True),
        ({"type": "business_hours", "state": "closed"}, "oi", False),
        ({"type": "conversation_status", "any_of": ["open"]}, "oi", True),
        ({"type": "conversation_priority", "any_of": ["urgent"]}, "oi", False),
        ({"type": "conversation_department", "any_of": [], "none": True}, "oi", True),
        ({"type": "conversation_number", "any_of": ["NUMBER"]}, "oi", True),
        ({"type": "first_message"}, "oi", True),
        ({"type": "text_contains", "words": ["preço"]}, "qual o PRECO?", True),
        ({"type": "text_contains", "words": ["preço"]}, "aprecio", False),
    ],
)
async def test_each_condition_on_replicated_facts(
    app, settings, client, tokens, org, condition, text, hit
):
    chat, tag = Chat(org), uuid.uuid4()
    condition = {k: (str(tag) if v == "TAG" else v) for k, v in condition.items()}
    if condition.get("any_of") == ["NUMBER"]:
        condition["any_of"] = [str(chat.number_id)]
    await make_rule(client, tokens, org, conditions=[condition])
    await deliver(
        app,
        settings,
        org_settings(org, business_hours=ALWAYS),
        chat.contact(plan="gold"),
        chat.tagged(tag),
        chat.opened(),
        chat.says(text),
    )
    assert len(await requested(app, org)) == (1 if hit else 0)


async def test_all_or_any(app, settings, client, tokens, org):
    closed = {"type": "business_hours", "state": "closed"}
    await make_rule(client, tokens, org, name="all", conditions=[KEYWORD, closed])
    await make_rule(
        client,
        tokens,
        org,
        name="any",
        match="any",
        conditions=[KEYWORD, closed],
        actions=[{"type": "add_note", "text": "any"}],
    )
    chat = Chat(org)
    await deliver(app, settings, org_settings(org, business_hours=ALWAYS), chat.says("reembolso"))
    assert kinds(await requested(app, org)) == [["add_note"]]


async def test_rules_in_order_until_one_stops_processing(app, settings, client, tokens, org):
    await make_rule(
        client, tokens, org, name="third", position=30, actions=[{"type": "add_note", "text": "3"}]
    )
    await make_rule(
        client, tokens, org, name="first", position=10, actions=[{"type": "add_note", "text": "1"}]
    )
    await make_rule(
        client,
        tokens,
        org,
        name="second",
        position=20,
        stop_processing=True,
        actions=[{"type": "add_note", "text": "2"}],
    )
    await make_rule(
        client,
        tokens,
        org,
        name="off",
        position=0,
        enabled=False,
        actions=[{"type": "add_note", "text": "0"}],
    )
    await deliver(app, settings, Chat(org).says("hi"))
    assert [b["actions"][0]["text"] for b in await requested(app, org)] == ["1", "2"]


async def test_other_triggers(app, settings, client, tokens, org):
    dept = uuid.uuid4()
    await make_rule(
        client,
        tokens,
        org,
        name="opened",
        trigger={"type": "conversation_opened"},
        actions=[{"type": "add_note", "text": "opened"}],
    )
    await make_rule(
        client,
        tokens,
        org,
        name="resolved",
        trigger={"type": "status_changed", "statuses": ["resolved"]},
        actions=[{"type": "add_note", "text": "resolved"}],
    )
    await make_rule(
        client,
        tokens,
        org,
        name="assigned",
        trigger={"type": "assigned"},
        conditions=[{"type": "conversation_department", "any_of": [str(dept)]}],
        actions=[{"type": "add_note", "text": "assigned"}],
    )
    chat = Chat(org)
    await deliver(
        app,
        settings,
        chat.opened(),
        chat.moved("open", "pending"),
        chat.assigned(None, dept),
        chat.moved("pending", "resolved"),
    )
    assert [b["actions"][0]["text"] for b in await requested(app, org)] == [
        "opened",
        "assigned",
        "resolved",
    ]


async def test_a_rule_never_retriggers_itself(app, settings, client, tokens, org):
    rule = await make_rule(
        client,
        tokens,
        org,
        trigger={"type": "status_changed"},
        actions=[{"type": "set_status", "status": "resolved"}],
    )
    other = await make_rule(
        client,
        tokens,
        org,
        name="other",
        trigger={"type": "status_changed"},
        actions=[{"type": "add_note", "text": "saw it"}],
    )
    chat = Chat(org)
    await deliver(app, settings, chat.moved("open", "resolved", actor_id=uuid.UUID(rule["id"])))
    [batch] = await requested(app, org)  # only the other rule reacted to rule's own change
    assert batch["source"]["id"] == other["id"]


async def test_actions_per_minute_cap(app, settings, client, tokens, org):
    r = await client.patch(
        "/v1/automation/settings",
        json={"actions_per_conversation_per_minute": 3},
        headers=tokens.headers(organization_id=org, role="org_admin"),
    )
    assert r.status_code == 200, r.text
    rule = await make_rule(
        client,
        tokens,
        org,
        actions=[{"type": "add_note", "text": "a"}, {"type": "add_note", "text": "b"}],
    )
    chat = Chat(org)
    await deliver(app, settings, chat.says("1"), chat.says("2"), chat.says("3"))
    assert len(await requested(app, org)) == 1
    r = await client.get(
        f"/v1/automation/rules/{rule['id']}/runs", headers=tokens.headers(organization_id=org)
    )
    assert sorted(x["outcome"] for x in r.json()["items"]) == [
        "acted",
        "rate_limited",
        "rate_limited",
    ]


async def test_another_organizations_rules_never_fire(app, settings, client, tokens, org):
    await make_rule(client, tokens, uuid.uuid4())
    await deliver(app, settings, Chat(org).says("hello"))
    assert await requested(app, org) == []


async def test_rules_are_cached_not_selected_per_message(app, settings, client, tokens, org):
    rule = await make_rule(client, tokens, org, conditions=[KEYWORD])
    chat = Chat(org)
    cache = app.state.engine.cache
    await deliver(app, settings, chat.says("a"))
    loads = cache.loads
    await deliver(app, settings, *(chat.says(f"m{i}") for i in range(5)))
    assert cache.loads == loads  # served from memory
    r = await client.patch(
        f"/v1/automation/rules/{rule['id']}",
        json={"conditions": []},
        headers=tokens.headers(organization_id=org, role="org_admin"),
    )
    assert r.status_code == 200, r.text
    await deliver(app, settings, chat.says("z"))
    assert cache.loads == loads + 1  # the change invalidated the set
    assert len(await requested(app, org)) == 1


async def test_rule_events_invalidate_other_processes(app, settings, client, tokens, org):
    from pytake_automation.rule_cache import RuleEvents
    from pytake_common.events import CloudEvent
    from pytake_common.mechanics import outbox

    cache = app.state.engine.cache
    await deliver(app, settings, Chat(org).says("warm the cache"))
    assert org in cache._sets
    await make_rule(client, tokens, org)
    await deliver(app, settings, Chat(org).says("x"))  # reloaded here after the local write
    async with app.state.db.transaction(bypass_rls=True) as s:
        event = (
            (
                await s.execute(
                    select(outbox.c.event).where(outbox.c.topic == "pytake.automation.rule")
                )
            )
            .scalars()
            .all()[-1]
        )
    replica = RuleEvents(settings, cache)
    replica.apply(CloudEvent.model_validate(event))  # an older or equal version: kept
    assert org in cache._sets
    newer = CloudEvent.model_validate({**event, "data": {**event["data"], "version": 99}})
    replica.apply(newer)
    assert org not in cache._sets


async def test_start_flow_of_an_unpublished_flow_is_a_recorded_failure(
    app, settings, client, tokens, org
):
    rule = await make_rule(
        client,
        tokens,
        org,
        actions=[
            {"type": "add_note", "text": "before"},
            {"type": "start_flow", "flow_id": str(uuid.uuid4())},
        ],
    )
    await deliver(app, settings, Chat(org).says("x"))
    assert kinds(await requested(app, org)) == [["add_note"]]
    r = await client.get(
        f"/v1/automation/rules/{rule['id']}/runs", headers=tokens.headers(organization_id=org)
    )
    [run] = r.json()["items"]
    assert run["outcome"] == "failed" and run["detail"].startswith("flow_not_published")


async def test_business_hours_closed_rule(app, settings, client, tokens, org):
    await make_rule(client, tokens, org, conditions=[{"type": "business_hours", "state": "closed"}])
    await deliver(app, settings, org_settings(org, business_hours=NEVER), Chat(org).says("x"))
    assert len(await requested(app, org)) == 1


async def test_priority_condition_follows_conversations_events(app, settings, client, tokens, org):
    from .helpers import internal, now

    await make_rule(
        client, tokens, org, conditions=[{"type": "conversation_priority", "any_of": ["urgent"]}]
    )
    chat = Chat(org)
    await deliver(app, settings, chat.says("before"))
    assert await requested(app, org) == []
    await deliver(
        app,
        settings,
        internal(
            "pytake.conversations.conversation.priority_changed.v1",
            org,
            chat.id,
            conversation_id=chat.id,
            contact_id=chat.contact_id,
            old_priority="normal",
            new_priority="urgent",
            changed_by=uuid.uuid4(),
            at=now(),
        ),
    )
    await deliver(app, settings, chat.says("after"))
    assert len(await requested(app, org)) == 1


async def test_a_trigger_no_rule_has_reads_no_situation(
    app, settings, client, tokens, org, monkeypatch
):
    """Opened, status and assignment events (a campaign's conversations) cost no situation
    read when no enabled rule of the organization has their trigger; a rule that has one
    still fires."""

    async def note_rule(trigger: str) -> None:
        actions = [{"type": "add_note", "text": trigger}]
        await make_rule(
            client, tokens, org, name=trigger, trigger={"type": trigger}, actions=actions
        )

    await note_rule("message_received")
    engine = app.state.engine
    read = engine.situation
    reads: list[str] = []

    async def counted(session, row, trigger, *args, **kwargs):
        reads.append(trigger)
        return await read(session, row, trigger, *args, **kwargs)

    monkeypatch.setattr(engine, "situation", counted)
    chat = Chat(org)
    await deliver(
        app, settings, chat.opened(), chat.moved("open", "pending"), chat.assigned(None, None)
    )
    assert reads == []
    await note_rule("conversation_opened")
    await deliver(app, settings, Chat(org).opened())
    assert reads == ["conversation_opened"]
    assert [b["actions"][0]["text"] for b in await requested(app, org)] == ["conversation_opened"]
