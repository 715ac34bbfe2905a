"""SLA state from automation's events: due times and breaches on the conversation, the
``sla=at_risk|breached`` inbox filters and attainment in the metrics."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pytake_conversations.sla import SLA_APPLIED, SLA_BREACHED

from .helpers import (
    Customer,
    conversation_rows,
    deliver,
    emitted,
    opened,
    platform_event,
    set_conversation,
)
from .test_automation_actions import apply, requested


@pytest.fixture
def org():
    return uuid.uuid4()


def applied(org, conv_id, *, started, first_response, resolution, at=None, policy=None):
    return platform_event(
        SLA_APPLIED,
        org,
        {
            "conversation_id": str(conv_id),
            "policy_id": str(policy or uuid.uuid4()),
            "first_response_due_at": first_response.isoformat() if first_response else None,
            "resolution_due_at": resolution.isoformat() if resolution else None,
            "started_at": started.isoformat(),
            "applied_at": (at or datetime.now(UTC)).isoformat(),
            "something_new": True,
        },
        str(conv_id),
    )


def breached(org, conv_id, kind, due, *, started):
    return platform_event(
        SLA_BREACHED,
        org,
        {
            "conversation_id": str(conv_id),
            "kind": kind,
            "due_at": due.isoformat(),
            "breached_at": (due + timedelta(seconds=1)).isoformat(),
            "started_at": started.isoformat(),
        },
        str(conv_id),
    )


async def get(client, tokens, org, conv_id):
    headers = tokens.headers(organization_id=org, role="viewer")
    r = await client.get(f"/v1/conversations/{conv_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def ids(client, tokens, org, **params) -> set[str]:
    headers = tokens.headers(organization_id=org, role="viewer")
    r = await client.get("/v1/conversations", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["items"]}


async def test_applied_then_breached_show_on_the_conversation_once(app, client, tokens, org):
    conv = await opened(app, org)
    started = conv["created_at"]
    fr_due, res_due = started + timedelta(minutes=15), started + timedelta(hours=8)
    policy = uuid.uuid4()
    event = applied(
        org, conv["id"], started=started, first_response=fr_due, resolution=res_due, policy=policy
    )
    await deliver(app, event)
    await deliver(app, event)  # redelivered under the same id: same state
    body = await get(client, tokens, org, conv["id"])
    assert body["sla_policy_id"] == str(policy)
    assert datetime.fromisoformat(body["first_response_due_at"]) == fr_due
    assert datetime.fromisoformat(body["resolution_due_at"]) == res_due
    assert body["first_response_breached_at"] is None

    breach = breached(org, conv["id"], "first_response", fr_due, started=started)
    await deliver(app, breach)
    first = (await get(client, tokens, org, conv["id"]))["first_response_breached_at"]
    assert datetime.fromisoformat(first) == fr_due + timedelta(seconds=1)
    # The same fact again under another event id keeps the first breach time.
    later = breached(
        org, conv["id"], "first_response", fr_due + timedelta(minutes=1), started=started
    )
    await deliver(app, later)
    assert (await get(client, tokens, org, conv["id"]))["first_response_breached_at"] == first
    # The list and the stream carry the same fields.
    headers = tokens.headers(organization_id=org, role="viewer")
    [item] = (await client.get("/v1/conversations", headers=headers)).json()["items"]
    assert item["first_response_breached_at"] == first


async def test_an_older_applied_arriving_late_changes_nothing(app, client, tokens, org):
    conv = await opened(app, org)
    started, now = conv["created_at"], datetime.now(UTC)

    def deciding(at, first_response):
        return applied(
            org, conv["id"], started=started, first_response=first_response, resolution=None, at=at
        )

    newer = deciding(now, started + timedelta(minutes=5))
    older = deciding(now - timedelta(seconds=5), started + timedelta(hours=1))
    await deliver(app, newer)
    await deliver(app, older)
    body = await get(client, tokens, org, conv["id"])
    assert datetime.fromisoformat(body["first_response_due_at"]) == started + timedelta(minutes=5)
    assert body["resolution_due_at"] is None


async def test_a_new_cycle_clears_breaches_and_a_stale_breach_is_ignored(app, client, tokens, org):
    agent = tokens.headers(organization_id=org, role="agent", user_id=uuid.uuid4())
    conv = await opened(app, org)
    cycle1 = conv["created_at"]
    due = cycle1 + timedelta(minutes=1)
    await deliver(
        app, applied(org, conv["id"], started=cycle1, first_response=due, resolution=None)
    )
    await deliver(app, breached(org, conv["id"], "first_response", due, started=cycle1))
    r = await client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"type": "text", "text": {"body": "sorry for the wait"}},
        headers=agent,
    )
    assert r.status_code == 202, r.text
    replied = await get(client, tokens, org, conv["id"])
    assert replied["sla_responded_at"] is not None
    # The conversation reopened: automation applies a new cycle after the reply.
    cycle2 = datetime.now(UTC) + timedelta(seconds=1)
    due2 = cycle2 + timedelta(minutes=10)
    await deliver(
        app, applied(org, conv["id"], started=cycle2, first_response=due2, resolution=None)
    )
    body = await get(client, tokens, org, conv["id"])
    assert body["first_response_breached_at"] is None
    assert body["sla_responded_at"] is None  # the reply was before this cycle
    # A breach of the first cycle arriving now is stale.
    await deliver(app, breached(org, conv["id"], "first_response", due, started=cycle1))
    assert (await get(client, tokens, org, conv["id"]))["first_response_breached_at"] is None
    assert str(conv["id"]) in await ids(client, tokens, org, sla="at_risk")


async def test_at_risk_and_breached_filters(app, client, tokens, org):
    now = datetime.now(UTC)
    soon, later = now + timedelta(minutes=10), now + timedelta(hours=3)
    rows = [await opened(app, org) for _ in range(6)]
    due_soon, due_later, answered, late, resolved, no_sla = (r["id"] for r in rows)
    await set_conversation(app, org, due_soon, first_response_due_at=soon)
    await set_conversation(
        app, org, due_later, first_response_due_at=later, resolution_due_at=later
    )
    await set_conversation(app, org, answered, first_response_due_at=soon, sla_responded_at=now)
    await set_conversation(app, org, late, resolution_due_at=now - timedelta(minutes=1))
    await deliver(
        app,
        breached(
            org, late, "resolution", now - timedelta(minutes=1), started=rows[3]["created_at"]
        ),
    )
    await set_conversation(
        app, org, resolved, status="resolved", resolution_due_at=soon, first_response_due_at=soon
    )
    at_risk = await ids(client, tokens, org, sla="at_risk")
    assert at_risk == {str(due_soon)}
    # Overdue and not yet reported breached: still at risk.
    await set_conversation(app, org, due_later, resolution_due_at=now - timedelta(seconds=5))
    assert await ids(client, tokens, org, sla="at_risk") == {str(due_soon), str(due_later)}
    assert await ids(client, tokens, org, sla="breached") == {str(late)}
    assert await ids(client, tokens, org, sla="breached", status="resolved") == set()
    headers = tokens.headers(organization_id=org, role="viewer")
    counts = (
        await client.get("/v1/conversations/counts", params={"sla": "at_risk"}, headers=headers)
    ).json()
    assert (counts["open"], counts["total"]) == (2, 2)
    bad = await client.get("/v1/conversations", params={"sla": "soon"}, headers=headers)
    assert bad.status_code == 422
    # Another organization sees none of them.
    other = uuid.uuid4()
    assert await ids(client, tokens, other, sla="breached") == set()
    assert no_sla not in at_risk


async def test_another_organizations_sla_event_is_refused_and_404_stays(app, client, tokens, org):
    conv = await opened(app, org)
    other = uuid.uuid4()
    event = applied(
        other,
        conv["id"],
        started=conv["created_at"],
        first_response=conv["created_at"],
        resolution=None,
    )
    event.data["organization_id"] = str(org)  # data of org in an event of another tenant
    with pytest.raises(ValidationError, match="in an event of tenant"):
        await deliver(app, event)
    # An event of the other tenant naming this conversation finds nothing there.
    foreign = applied(
        other,
        conv["id"],
        started=conv["created_at"],
        first_response=conv["created_at"],
        resolution=None,
    )
    await deliver(app, foreign)
    assert (await get(client, tokens, org, conv["id"]))["first_response_due_at"] is None
    headers = tokens.headers(organization_id=other, role="viewer")
    assert (await client.get(f"/v1/conversations/{conv['id']}", headers=headers)).status_code == 404


async def test_metrics_attainment_per_agent_and_department(app, client, tokens, org):
    now = datetime.now(UTC)
    ana, bob, support = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = [await opened(app, org, Customer(org, wa_id=f"5511{i:09d}")) for i in range(4)]
    started = now - timedelta(minutes=30)
    common = {"sla_started_at": started, "department_id": support}
    # ana: first response met, resolution met; bob: first response breached, late resolution
    await set_conversation(
        app,
        org,
        rows[0]["id"],
        assignee_id=ana,
        first_response_due_at=now,
        sla_responded_at=now - timedelta(minutes=20),
        resolution_due_at=now,
        status="resolved",
        resolved_at=now - timedelta(minutes=1),
        **common,
    )
    await set_conversation(
        app,
        org,
        rows[1]["id"],
        assignee_id=bob,
        first_response_due_at=now - timedelta(minutes=20),
        first_response_breached_at=now - timedelta(minutes=20),
        resolution_due_at=now - timedelta(minutes=10),
        status="closed",
        closed_at=now,
        **common,
    )
    # bob: still running (neither met nor breached)
    await set_conversation(
        app,
        org,
        rows[2]["id"],
        assignee_id=bob,
        first_response_due_at=now + timedelta(hours=1),
        sla_started_at=started,
    )
    # outside the period
    await set_conversation(
        app,
        org,
        rows[3]["id"],
        assignee_id=ana,
        first_response_due_at=now,
        first_response_breached_at=now,
        sla_started_at=now - timedelta(days=30),
    )
    r = await client.get(
        "/v1/conversations/metrics",
        params={
            "from": (now - timedelta(hours=1)).isoformat(),
            "to": (now + timedelta(minutes=1)).isoformat(),
        },
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["organization"]["sla"] == {
        "first_response": {"met": 1, "breached": 1, "rate": 0.5},
        "resolution": {"met": 1, "breached": 1, "rate": 0.5},
    }
    agents = {a["agent_id"]: a["sla"] for a in m["agents"]}
    assert agents[str(ana)]["first_response"] == {"met": 1, "breached": 0, "rate": 1.0}
    assert agents[str(bob)]["first_response"] == {"met": 0, "breached": 1, "rate": 0.0}
    assert agents[str(bob)]["resolution"] == {"met": 0, "breached": 1, "rate": 0.0}
    departments = {d["department_id"]: d["sla"] for d in m["departments"]}
    assert departments[str(support)]["resolution"] == {"met": 1, "breached": 1, "rate": 0.5}
    assert departments[None]["first_response"] == {"met": 0, "breached": 0, "rate": None}
    rows_now = await conversation_rows(app, org)
    assert len(rows_now) == 4


async def test_a_priority_change_is_told_once_for_automations_due_times(app, client, tokens, org):
    agent_id = uuid.uuid4()
    agent = tokens.headers(organization_id=org, role="agent", user_id=agent_id)
    conv = await opened(app, org)
    url = f"/v1/conversations/{conv['id']}"
    for _ in range(2):  # the second asks for what already is: nothing to tell
        r = await client.post(f"{url}/priority", json={"priority": "urgent"}, headers=agent)
        assert r.status_code == 200, r.text
    r = await client.post(
        f"{url}/status", json={"status": "pending", "priority": "low"}, headers=agent
    )
    assert r.status_code == 200, r.text
    told = [e["data"] for e in await emitted(app, org, "conversation.priority_changed.v1")]
    assert [(d["old_priority"], d["new_priority"]) for d in told] == [
        ("normal", "urgent"),
        ("urgent", "low"),
    ]
    assert {d["changed_by"] for d in told} == {str(agent_id)}


async def test_a_bot_message_is_neither_a_first_response_nor_the_slas_reply(
    app, client, tokens, org
):
    agent_id = uuid.uuid4()
    agent = tokens.headers(organization_id=org, role="agent", user_id=agent_id)
    conv = await opened(app, org)
    started = conv["created_at"]
    due = started + timedelta(minutes=30)
    await deliver(
        app, applied(org, conv["id"], started=started, first_response=due, resolution=None)
    )
    await apply(
        app, requested(org, conv, {"type": "send_text", "text": "Hi! An agent will be with you."})
    )
    assert (await get(client, tokens, org, conv["id"]))["sla_responded_at"] is None
    assert str(conv["id"]) in await ids(client, tokens, org, sla="at_risk")
    r = await client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"type": "text", "text": {"body": "Hello, Ana here"}},
        headers=agent,
    )
    assert r.status_code == 202, r.text
    assert (await get(client, tokens, org, conv["id"]))["sla_responded_at"] == r.json()[
        "created_at"
    ]
    assert await ids(client, tokens, org, sla="at_risk") == set()
    window = {
        "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    }
    m = (
        await client.get(
            "/v1/conversations/metrics",
            params=window,
            headers=tokens.headers(organization_id=org, role="viewer"),
        )
    ).json()
    assert [a["agent_id"] for a in m["agents"] if a["first_response"]["count"]] == [str(agent_id)]
    assert m["organization"]["response"]["count"] == 1
