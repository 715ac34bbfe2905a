"""A batch of conversation events handled at once gives what one by one gives."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from pytake_automation.flows.tables import flow_sessions
from pytake_automation.tables import conversations, runs
from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_devstack.feeding import records

from .conversation_events import Conversation, organization_settings
from .helpers import ALWAYS, deliver, make_rule, requested
from .test_flow_sessions import published
from .test_flows_api import four_steps


async def _organization(client: Any, tokens: Any) -> tuple[uuid.UUID, dict[str, str]]:
    """An organization with a cap, a welcome message, rules of several kinds and a flow;
    its rules' names by id."""
    org = uuid.uuid4()
    h = tokens.headers(organization_id=org, role="org_admin")
    r = await client.patch(
        "/v1/automation/settings", json={"actions_per_conversation_per_minute": 4}, headers=h
    )
    assert r.status_code == 200, r.text
    flow_id = await published(client, tokens, org, four_steps())
    rules = [
        await make_rule(
            client,
            tokens,
            org,
            name="keyword",
            conditions=[{"type": "text_contains", "words": ["boleto"]}],
            actions=[
                {"type": "add_note", "text": "boleto"},
                {"type": "set_priority", "priority": "high"},
            ],
        ),
        await make_rule(
            client,
            tokens,
            org,
            name="pending",
            conditions=[{"type": "conversation_status", "any_of": ["pending"]}],
            actions=[{"type": "add_note", "text": "pending"}],
        ),
        await make_rule(
            client,
            tokens,
            org,
            name="help",
            conditions=[{"type": "text_contains", "words": ["help"]}],
            actions=[{"type": "start_flow", "flow_id": flow_id}],
        ),
        await make_rule(
            client,
            tokens,
            org,
            name="first",
            conditions=[{"type": "first_message"}],
            actions=[{"type": "add_note", "text": "first"}],
        ),
    ]
    return org, {rule["id"]: rule["name"] for rule in rules}


def _events(org: uuid.UUID) -> tuple[list[CloudEvent], list[CloudEvent], list[Conversation]]:
    """What comes before (settings, conversations opened) and the batch itself: customers'
    messages on several conversations, repeated ones, status changes between them that
    rules read, a flow started and answered, an agent's reply."""
    chats = [Conversation(org=org) for _ in range(4)]
    a, b, c, d = chats
    before = [organization_settings(org, business_hours=ALWAYS, welcome_message="Oi!")]
    before += [chat.opened() for chat in chats]
    batch = [
        a.says("segunda via do boleto"),
        b.says("bom dia"),
        c.says("help me"),
        a.says("boleto de novo"),  # the same conversation again: a run of its own
        b.status("open", "pending"),
        b.says("ainda pendente"),
        c.says("1"),  # the flow's answer
        d.says("boleto"),
        a.says("boleto 3"),  # past the cap of 4 actions a minute
        d.replies(),
        d.says("e agora"),
        b.says("boleto"),
    ]
    return before, batch, chats


async def _outcome(
    app: Any, org: uuid.UUID, chats: list[Conversation], names: dict[str, str]
) -> dict[str, Any]:
    """What automation decided, named by conversation index and rule name."""
    index = {str(chat.id): i for i, chat in enumerate(chats)}
    asked: list[tuple[int, str, str | None, list[str]]] = [
        (
            index[e["conversation_id"]],
            e["source"]["kind"],
            names.get(e["source"]["id"] or "", e["source"]["id"] and "flow"),
            [a["type"] for a in e["actions"]],
        )
        for e in await requested(app, org)
    ]
    by_conversation = {i: [x[1:] for x in asked if x[0] == i] for i in range(len(chats))}
    async with app.state.db.transaction(organization_id=org) as s:
        ran = (
            await s.execute(
                select(runs.c.conversation_id, runs.c.source_key, runs.c.rule_id, runs.c.outcome)
            )
        ).all()
        replica = (
            await s.execute(
                select(
                    conversations.c.id,
                    conversations.c.status,
                    conversations.c.inbound_count,
                    conversations.c.last_agent_reply_at.is_not(None),
                )
            )
        ).all()
        flows = (
            await s.execute(select(flow_sessions.c.conversation_id, flow_sessions.c.status))
        ).all()
    return {
        "asked": by_conversation,
        "runs": sorted(
            (
                index[str(r.conversation_id)],
                names.get(str(r.rule_id), r.source_key.split(":")[0]),
                r.outcome,
            )
            for r in ran
        ),
        "replica": sorted((index[str(r[0])], *r[1:]) for r in replica),
        "flows": sorted((index[str(f[0])], f[1]) for f in flows),
    }


async def test_a_batch_gives_what_one_by_one_gives_and_redelivery_adds_nothing(
    app, settings, client, tokens
):
    outcomes = []
    for batched in (False, True):
        org, names = await _organization(client, tokens)
        before, batch, chats = _events(org)
        await deliver(app, settings, *before)
        if batched:
            consumer = EventConsumer(settings, app.state.db, "automation", app.state.handlers)
            try:
                await consumer.process_batch(records(batch))
                first = await _outcome(app, org, chats, names)
                await consumer.process_batch(records(batch))  # redelivered
                assert await _outcome(app, org, chats, names) == first
            finally:
                await consumer.close()
        else:
            await deliver(app, settings, *batch)
        outcomes.append(await _outcome(app, org, chats, names))
    one_by_one, at_once = outcomes
    # the scenario does what it is meant to: rules, the welcome, the cap, a flow
    assert ("rule", "pending", ["add_note"]) in one_by_one["asked"][1]
    assert ("schedule", None, ["send_text"]) in one_by_one["asked"][0]
    assert (0, "keyword", "rate_limited") in one_by_one["runs"]
    assert one_by_one["flows"] == [(2, "active")]
    assert at_once == one_by_one
