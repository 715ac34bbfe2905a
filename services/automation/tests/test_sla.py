"""SLA policies (CRUD, choice), due times (calendar and business minutes), met targets,
breaches once, and isolation between organizations."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pytake_automation.tables import sla_states, timers

from .conversation_events import Conversation, emitted, organization_settings
from .helpers import deliver

URL = "/v1/automation/sla-policies"
TARGETS = {
    "normal": {"first_response_minutes": 15, "resolution_minutes": 240},
    "urgent": {"first_response_minutes": 5, "resolution_minutes": 60},
}


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def create_policy(client, tokens, org, **body):
    admin = tokens.headers(organization_id=org, role="org_admin")
    payload = {"name": "Default", "is_default": True, "targets": TARGETS, **body}
    r = await client.post(URL, json=payload, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


async def test_policies_crud_one_default_and_validation(client, tokens):
    org = uuid.uuid4()
    admin = {**tokens.headers(organization_id=org, role="org_admin"), "Idempotency-Key": "p1"}
    body = {"name": "Default", "is_default": True, "targets": TARGETS}
    first = await client.post(URL, json=body, headers=admin)
    again = await client.post(URL, json=body, headers=admin)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    policy_id = first.json()["id"]
    second = await client.post(
        URL, json=body, headers=tokens.headers(organization_id=org, role="org_admin")
    )
    assert second.status_code == 409
    assert second.json()["code"] == "default_policy_exists"
    plain = tokens.headers(organization_id=org, role="org_admin")
    no_conditions = await client.post(URL, json={**body, "is_default": False}, headers=plain)
    assert no_conditions.status_code == 422
    bad_target = {**body, "targets": {"normal": {}}}
    assert (await client.post(URL, json=bad_target, headers=plain)).status_code == 422
    bad_priority = {**body, "targets": {"asap": {"first_response_minutes": 1}}}
    assert (await client.post(URL, json=bad_priority, headers=plain)).status_code == 422
    viewer = tokens.headers(organization_id=org, role="viewer")
    assert (await client.post(URL, json=body, headers=viewer)).status_code == 403

    r = await client.patch(
        f"{URL}/{policy_id}", json={"name": "Everyone", "business_hours": True}, headers=plain
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["business_hours"]) == ("Everyone", True)
    r = await client.patch(
        f"{URL}/{policy_id}", json={"department_ids": [str(uuid.uuid4())]}, headers=plain
    )
    assert r.status_code == 422  # the default takes no conditions
    page = (await client.get(URL, headers=viewer)).json()
    assert [p["id"] for p in page["items"]] == [policy_id]
    # Another organization's id answers 404 everywhere.
    other = tokens.headers(organization_id=uuid.uuid4(), role="org_admin")
    assert (await client.get(f"{URL}/{policy_id}", headers=other)).status_code == 404
    assert (await client.patch(f"{URL}/{policy_id}", json={}, headers=other)).status_code == 404
    assert (await client.delete(f"{URL}/{policy_id}", headers=other)).status_code == 404
    assert (await client.get(URL, headers=other)).json()["items"] == []
    assert (await client.delete(f"{URL}/{policy_id}", headers=plain)).status_code == 204
    assert (await client.get(f"{URL}/{policy_id}", headers=viewer)).status_code == 404


async def test_opening_applies_due_times_once_and_a_department_policy_wins(
    app, settings, client, tokens
):
    conv, other = Conversation(), None
    other = Conversation(org=conv.org)
    support = uuid.uuid4()
    await create_policy(client, tokens, conv.org)
    special = await create_policy(
        client,
        tokens,
        conv.org,
        name="Support",
        is_default=False,
        department_ids=[str(support)],
        targets={"normal": {"first_response_minutes": 2}},
    )
    opened_at = datetime.now(UTC).replace(microsecond=0)
    opened = conv.opened(opened_at)
    await deliver(app, settings, opened, opened)
    await deliver(app, settings, other.assigned(None, support), other.opened(opened_at))
    applied = await emitted(app, conv.org, "sla.applied.v1")
    by_conv = {a["conversation_id"]: a for a in applied}
    assert len(applied) == 2
    mine = by_conv[str(conv.id)]
    assert at(mine["first_response_due_at"]) == opened_at + timedelta(minutes=15)
    assert at(mine["resolution_due_at"]) == opened_at + timedelta(minutes=240)
    assert at(mine["started_at"]) == opened_at
    theirs = by_conv[str(other.id)]
    assert theirs["policy_id"] == special["id"]
    assert at(theirs["first_response_due_at"]) == opened_at + timedelta(minutes=2)
    assert theirs["resolution_due_at"] is None


async def test_business_hours_policy_counts_only_opening_hours(app, settings, client, tokens):
    conv = Conversation()
    hours = {"monday": [{"start": "09:00", "end": "18:00"}]}
    await deliver(
        app,
        settings,
        organization_settings(conv.org, timezone="America/Sao_Paulo", business_hours=hours),
    )
    await create_policy(client, tokens, conv.org, business_hours=True)
    saturday = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # noon in São Paulo
    await deliver(app, settings, conv.opened(saturday))
    [applied] = await emitted(app, conv.org, "sla.applied.v1")
    # Monday 09:00 local (12:00 UTC) + 15 min; resolution 240 min → Monday 13:00 local
    assert at(applied["first_response_due_at"]) == datetime(2026, 12, 7, 12, 15, tzinfo=UTC)
    assert at(applied["resolution_due_at"]) == datetime(2026, 12, 7, 16, 0, tzinfo=UTC)
    assert applied["business_hours"] is True


async def test_priority_change_reapplies_the_same_cycle(app, settings, client, tokens):
    conv = Conversation()
    await create_policy(client, tokens, conv.org)
    opened_at = datetime.now(UTC).replace(microsecond=0)
    await deliver(app, settings, conv.opened(opened_at))
    change = conv.priority("normal", "urgent")
    await deliver(app, settings, change, change)
    applied = await emitted(app, conv.org, "sla.applied.v1")
    assert len(applied) == 2
    assert applied[1]["priority"] == "urgent"
    assert at(applied[1]["started_at"]) == opened_at
    assert at(applied[1]["first_response_due_at"]) == opened_at + timedelta(minutes=5)
    # A business-started conversation owes no response time.
    started = Conversation(org=conv.org)
    await deliver(app, settings, started.opened(started_by=uuid.uuid4()))
    assert len(await emitted(app, conv.org, "sla.applied.v1")) == 2


async def stale_timer(app, conv: Conversation, kind: str, source_key: str, cycle: datetime):
    """A due timer armed for the cycle started at ``cycle`` (as if armed again, or left over)."""
    async with app.state.db.transaction(organization_id=conv.org) as s:
        await s.execute(
            timers.insert().values(
                organization_id=conv.org,
                conversation_id=conv.id,
                kind=kind,
                source_key=source_key,
                due_at=cycle,
                armed_by=cycle.isoformat(),
            )
        )


async def breaches(app, org) -> list[tuple[str, str]]:
    return sorted((b["conversation_id"], b["kind"]) for b in await emitted(app, org, "breached.v1"))


async def test_breach_fires_once_and_met_targets_never_breach(app, settings, client, tokens):
    late = Conversation()
    answered, bot_only, resolved = (Conversation(org=late.org) for _ in range(3))
    await create_policy(client, tokens, late.org)
    opened_at = datetime.now(UTC) - timedelta(hours=5)  # every target (15 and 240 min) is due
    for c in (late, answered, bot_only, resolved):
        await deliver(app, settings, c.opened(opened_at))
    await deliver(app, settings, answered.replies("user", at=opened_at + timedelta(minutes=3)))
    await deliver(
        app, settings, bot_only.replies("automation", at=opened_at + timedelta(minutes=1))
    )
    await deliver(
        app, settings, resolved.status("open", "resolved", at=opened_at + timedelta(hours=1))
    )
    async with app.state.db.transaction(organization_id=late.org) as s:
        armed = set((await s.execute(select(timers.c.conversation_id, timers.c.kind))).all())
    assert (answered.id, "sla_first_response") not in armed
    assert (answered.id, "sla_resolution") in armed
    assert not {c for c, _ in armed} & {resolved.id}

    assert await app.state.timers.fire_due() == 5
    assert await app.state.timers.fire_due() == 0  # each fired once
    expected = sorted(
        [
            (str(late.id), "first_response"),
            (str(late.id), "resolution"),
            (str(answered.id), "resolution"),
            (str(bot_only.id), "first_response"),
            (str(bot_only.id), "resolution"),
        ]
    )
    assert await breaches(app, late.org) == expected
    [one] = [
        b
        for b in await emitted(app, late.org, "breached.v1")
        if b["conversation_id"] == str(late.id) and b["kind"] == "first_response"
    ]
    assert at(one["due_at"]) == opened_at + timedelta(minutes=15)
    assert at(one["started_at"]) == opened_at
    # A timer armed again for a breached target (a redelivered arming) reports nothing.
    await stale_timer(app, late, "sla_first_response", "sla", opened_at)
    assert await app.state.timers.fire_due() == 1
    assert await breaches(app, late.org) == expected


async def test_reopening_starts_a_new_cycle_and_a_stale_timer_does_nothing(
    app, settings, client, tokens
):
    conv = Conversation()
    await create_policy(client, tokens, conv.org)
    first = datetime.now(UTC) - timedelta(hours=2)
    await deliver(app, settings, conv.opened(first), conv.status("open", "resolved", at=first))
    reopened = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
    await deliver(app, settings, conv.opened(reopened))
    applied = await emitted(app, conv.org, "sla.applied.v1")
    assert [at(a["started_at"]) for a in applied] == [first, reopened]
    async with app.state.db.transaction(organization_id=conv.org) as s:
        state = (await s.execute(select(sla_states))).one()
    # a timer of the first cycle, somehow still there, is stale
    await stale_timer(app, conv, "sla_resolution", "old", first)
    assert (state.started_at, state.resolved_at) == (reopened, None)
    await app.state.timers.fire_due()
    [breach] = await emitted(app, conv.org, "sla.breached.v1")
    assert (breach["kind"], at(breach["started_at"])) == ("first_response", reopened)


@pytest.mark.parametrize("deleted", [True, False])
async def test_no_policy_no_sla_and_another_organizations_policy_does_not_apply(
    app, settings, client, tokens, deleted
):
    mine, theirs = Conversation(), Conversation()
    policy = await create_policy(client, tokens, theirs.org)
    if deleted:
        admin = tokens.headers(organization_id=theirs.org, role="org_admin")
        await client.delete(f"{URL}/{policy['id']}", headers=admin)
    await deliver(app, settings, mine.opened())
    assert await emitted(app, mine.org, "sla.applied.v1") == []
