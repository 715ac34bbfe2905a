"""Starting: the audience frozen into recipients, exclusions by reason, plan limits."""

import uuid
from datetime import UTC, datetime, timedelta

from pytake_common import event_types as et
from pytake_common.tenancy import OrganizationState

from .helpers import (
    World,
    consent,
    contact_created,
    create_campaign,
    deliver,
    emitted,
    internal,
    recipient_rows,
    start_campaign,
    tagged,
)


async def test_freeze_excludes_by_reason_and_counts_each(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=3)
    org = w.org
    blocked, erased, no_consent, no_wa = (uuid.uuid4() for _ in range(4))
    now = datetime.now(UTC)
    events = []
    for cid in (blocked, erased, no_consent, no_wa):
        wa = "" if cid == no_wa else None
        created = contact_created(org, cid, wa_id=wa)
        if cid == no_wa:
            created.data["wa_id"] = None
        events += [created, tagged(org, cid, w.tag)]
        if cid != no_consent:
            events.append(consent(org, cid))
    events += [
        internal(
            et.CONTACTS_CONTACT_BLOCKED_V1,
            org,
            blocked,
            contact_id=blocked,
            reason="spam",
            blocked_at=now,
            blocked_by=uuid.uuid4(),
        ),
        internal(et.CONTACTS_CONTACT_ERASED_V1, org, erased, contact_id=erased, erased_at=now),
    ]
    await deliver(app, settings, *events)
    stranger = uuid.uuid4()  # not a contact of this organization
    other_org_contact = uuid.uuid4()
    await deliver(app, settings, contact_created(uuid.uuid4(), other_org_contact))
    c = await create_campaign(
        client,
        tokens,
        w,
        audience={
            "tags_any": [str(w.tag)],
            # erasure removed its tags (as contacts does): it is here by id
            "contact_ids": [str(stranger), str(other_org_contact), str(w.contacts[0]), str(erased)],
        },
    )
    started = await start_campaign(client, tokens, w, c["id"])
    assert started["status"] == "running"
    assert started["recipients_total"] == 3
    assert started["exclusions"] == {
        "blocked": 1,
        "erased": 1,
        "no_marketing_consent": 1,
        "no_whatsapp_id": 1,
        "not_found": 2,
    }
    rows = await recipient_rows(app, c["id"])
    assert sorted(r["contact_id"] for r in rows) == sorted(w.contacts)  # one per contact
    assert {r["status"] for r in rows} == {"queued"}
    [event] = await emitted(app, "campaign.started.v1")
    assert event["data"]["recipients"] == 3 and event["data"]["exclusions"]["erased"] == 1
    stats = (
        await client.get(
            f"/v1/campaigns/{c['id']}/stats", headers=tokens.headers(organization_id=org)
        )
    ).json()
    assert stats["by_status"]["queued"] == 3 and stats["exclusions"]["blocked"] == 1


async def test_a_utility_template_needs_no_consent(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=2, opted_in=False)
    template = {"name": "notice", "language": "en_US", "parameters": ["{{contact.name}}"]}
    c = await create_campaign(client, tokens, w, template=template)
    started = await start_campaign(client, tokens, w, c["id"])
    assert started["recipients_total"] == 2 and started["exclusions"] == {}
    assert started["template_category"] == "UTILITY"
    marketing = await create_campaign(client, tokens, w, name="mkt")
    r = await client.post(
        f"/v1/campaigns/{marketing['id']}/start", headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 422 and r.json()["code"] == "audience_empty"
    assert r.json()["exclusions"] == {"no_marketing_consent": 2}
    assert (await recipient_rows(app, marketing["id"])) == []


async def test_tags_all_filters_and_explicit_ids(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=3)
    second_tag = uuid.uuid4()
    await deliver(
        app,
        settings,
        internal(
            et.CONTACTS_TAG_CREATED_V1, w.org, second_tag, tag_id=second_tag, name="b", color="#0"
        ),
        tagged(w.org, w.contacts[0], second_tag),
        internal(
            et.CONTACTS_CONTACT_UPDATED_V1,
            w.org,
            w.contacts[1],
            contact_id=w.contacts[1],
            name="Bruno Souza",
            phone="+55 21 99999-0000",
            changed=["name"],
        ),
    )
    both = await create_campaign(
        client, tokens, w, audience={"tags_all": [str(w.tag), str(second_tag)]}
    )
    assert (await start_campaign(client, tokens, w, both["id"]))["recipients_total"] == 1
    [row] = await recipient_rows(app, both["id"])
    assert row["contact_id"] == w.contacts[0]
    by_name = await create_campaign(client, tokens, w, audience={"filters": {"q": "bruno"}})
    await start_campaign(client, tokens, w, by_name["id"])
    assert [r["contact_id"] for r in await recipient_rows(app, by_name["id"])] == [w.contacts[1]]
    by_id = await create_campaign(client, tokens, w, audience={"contact_ids": [str(w.contacts[2])]})
    await start_campaign(client, tokens, w, by_id["id"])
    assert [r["contact_id"] for r in await recipient_rows(app, by_id["id"])] == [w.contacts[2]]
    everyone = await create_campaign(client, tokens, w, audience={"all_contacts": True})
    assert (await start_campaign(client, tokens, w, everyone["id"]))["recipients_total"] == 3


async def test_monthly_recipients_limit_answers_402_and_freezes_nothing(
    app, settings, client, tokens
):
    w = await World().build(app, settings, contacts=3)
    app.state.organizations.orgs[w.org] = OrganizationState(
        w.org, limits={"monthly_campaign_recipients": 4}
    )
    first = await create_campaign(client, tokens, w)
    await start_campaign(client, tokens, w, first["id"])
    # a finished campaign deleted does not give its recipients back
    headers = tokens.headers(organization_id=w.org)
    assert (await client.post(f"/v1/campaigns/{first['id']}/cancel", headers=headers)).is_success
    assert (await client.delete(f"/v1/campaigns/{first['id']}", headers=headers)).is_success
    second = await create_campaign(client, tokens, w, name="again")
    r = await client.post(
        f"/v1/campaigns/{second['id']}/start", headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 402, r.text
    problem = r.json()
    assert problem["code"] == "plan_limit_exceeded"
    assert problem["limit"] == "monthly_campaign_recipients" and problem["used"] == 3
    assert await recipient_rows(app, second["id"]) == []
    after = await client.get(
        f"/v1/campaigns/{second['id']}", headers=tokens.headers(organization_id=w.org)
    )
    assert after.json()["status"] == "draft"


async def test_scheduled_start_and_bad_times(app, settings, client, tokens):
    w = await World().build(app, settings)
    headers = tokens.headers(organization_id=w.org)
    c = await create_campaign(client, tokens, w)
    r = await client.post(
        f"/v1/campaigns/{c['id']}/start",
        json={"scheduled_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert r.status_code == 422
    later = datetime.now(UTC) + timedelta(hours=1)
    started = await start_campaign(client, tokens, w, c["id"], scheduled_at=later)
    assert started["status"] == "scheduled"
    assert datetime.fromisoformat(started["scheduled_at"]) == later
    assert started["recipients_total"] == 3


async def test_start_with_idempotency_key_replays(app, settings, client, tokens):
    w = await World().build(app, settings)
    c = await create_campaign(client, tokens, w)
    headers = {**tokens.headers(organization_id=w.org), "Idempotency-Key": "start-1"}
    first = await client.post(f"/v1/campaigns/{c['id']}/start", headers=headers)
    again = await client.post(f"/v1/campaigns/{c['id']}/start", headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(await recipient_rows(app, c["id"])) == 3
    assert len(await emitted(app, "campaign.started.v1")) == 1
