"""/v1/campaigns: validation and problem codes, drafts only editable, roles, other orgs."""

import uuid

import pytest

from pytake_common.tenancy import OrganizationState

from .helpers import World, create_campaign, deliver, emitted, start_campaign, template_event


async def test_create_read_list_and_events(app, settings, client, tokens):
    w = await World().build(app, settings)
    created = await create_campaign(client, tokens, w)
    assert created["status"] == "draft"
    assert created["template"]["parameters"][1] == "today"
    headers = tokens.headers(organization_id=w.org)
    r = await client.get(f"/v1/campaigns/{created['id']}", headers=headers)
    assert r.status_code == 200 and r.json() == created
    second = await create_campaign(client, tokens, w, name="Second")
    page = (await client.get("/v1/campaigns?limit=1", headers=headers)).json()
    assert [c["id"] for c in page["items"]] == [second["id"]]
    rest = (
        await client.get(f"/v1/campaigns?limit=1&cursor={page['next_cursor']}", headers=headers)
    ).json()
    assert [c["id"] for c in rest["items"]] == [created["id"]] and rest["next_cursor"] is None
    [event, _] = await emitted(app, "campaign.created.v1")
    assert event["subject"] == created["id"] and event["data"]["status"] == "draft"


async def test_idempotency_key_replays_the_first_answer(app, settings, client, tokens):
    w = await World().build(app, settings)
    headers = {**tokens.headers(organization_id=w.org), "Idempotency-Key": "k1"}
    first = await client.post("/v1/campaigns", json=w.body(), headers=headers)
    again = await client.post("/v1/campaigns", json=w.body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert len(await emitted(app, "campaign.created.v1")) == 1
    other = await client.post("/v1/campaigns", json=w.body(name="other"), headers=headers)
    assert other.status_code == 422


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"template": {"name": "nope", "language": "en_US"}}, 422, "template_not_found"),
        (
            {"template": {"name": "sale", "language": "en_US", "parameters": ["only one"]}},
            422,
            "template_parameter_count",
        ),
        (
            {"template": {"name": "sale", "language": "en_US", "parameters": ["{{x.y}}", "b"]}},
            422,
            "invalid_placeholder",
        ),
        ({"audience": {"tags_any": [str(uuid.uuid4())]}}, 422, "unknown_tag"),
        ({"audience": {}}, 422, "invalid_input"),
        ({"number_id": str(uuid.uuid4())}, 404, "not_found"),
        ({"rate_per_second": 0}, 422, "invalid_input"),
        ({"surprise": 1}, 422, "invalid_input"),
    ],
)
async def test_bad_campaigns_are_refused_with_a_problem(
    app, settings, client, tokens, change, status, code
):
    w = await World().build(app, settings, contacts=0)
    r = await client.post(
        "/v1/campaigns", json=w.body(**change), headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


async def test_an_unapproved_template_is_refused(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=0)
    await deliver(app, settings, template_event(w.org, status="PENDING"))
    r = await client.post(
        "/v1/campaigns", json=w.body(), headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 422 and r.json()["code"] == "template_not_approved"


async def test_only_a_draft_is_editable_and_deletable(app, settings, client, tokens):
    w = await World().build(app, settings)
    headers = tokens.headers(organization_id=w.org)
    c = await create_campaign(client, tokens, w)
    r = await client.patch(
        f"/v1/campaigns/{c['id']}", json={"name": "Renamed", "rate_per_second": 5}, headers=headers
    )
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert r.json()["rate_per_second"] == 5
    await start_campaign(client, tokens, w, c["id"])
    r = await client.patch(f"/v1/campaigns/{c['id']}", json={"name": "x"}, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "campaign_not_editable"
    r = await client.delete(f"/v1/campaigns/{c['id']}", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "invalid_campaign_state"
    r = await client.post(f"/v1/campaigns/{c['id']}/start", headers=headers)
    assert r.status_code == 409
    draft = await create_campaign(client, tokens, w, name="draft")
    assert (await client.delete(f"/v1/campaigns/{draft['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"/v1/campaigns/{draft['id']}", headers=headers)).status_code == 404


async def test_another_organizations_campaign_is_not_found(app, settings, client, tokens):
    w = await World().build(app, settings)
    c = await create_campaign(client, tokens, w)
    stranger = tokens.headers(organization_id=uuid.uuid4())
    cid = c["id"]
    for method, path in [
        ("GET", f"/v1/campaigns/{cid}"),
        ("PATCH", f"/v1/campaigns/{cid}"),
        ("DELETE", f"/v1/campaigns/{cid}"),
        ("POST", f"/v1/campaigns/{cid}/start"),
        ("POST", f"/v1/campaigns/{cid}/pause"),
        ("POST", f"/v1/campaigns/{cid}/resume"),
        ("POST", f"/v1/campaigns/{cid}/cancel"),
        ("GET", f"/v1/campaigns/{cid}/recipients"),
        ("GET", f"/v1/campaigns/{cid}/stats"),
    ]:
        kwargs = {"json": {}} if method in ("PATCH", "POST") else {}
        r = await client.request(method, path, headers=stranger, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
    listed = await client.get("/v1/campaigns", headers=stranger)
    assert listed.json()["items"] == []
    # the other organization's number is not this one's either
    other = World()
    await other.build(app, settings, contacts=0)
    body = other.body(number_id=str(w.number))
    r = await client.post(
        "/v1/campaigns", json=body, headers=tokens.headers(organization_id=other.org)
    )
    assert r.status_code == 404


async def test_viewers_read_only(app, settings, client, tokens):
    w = await World().build(app, settings)
    c = await create_campaign(client, tokens, w)
    viewer = tokens.headers(organization_id=w.org, role="viewer")
    assert (await client.get(f"/v1/campaigns/{c['id']}", headers=viewer)).status_code == 200
    assert (await client.get(f"/v1/campaigns/{c['id']}/stats", headers=viewer)).status_code == 200
    r = await client.post("/v1/campaigns", json=w.body(), headers=viewer)
    assert r.status_code == 403
    r = await client.post(f"/v1/campaigns/{c['id']}/start", headers=viewer)
    assert r.status_code == 403
    agent = tokens.headers(organization_id=w.org, role="agent")
    assert (await client.post("/v1/campaigns", json=w.body(), headers=agent)).status_code == 201


async def test_the_plans_campaign_limit_answers_402(app, settings, client, tokens):
    w = await World().build(app, settings, contacts=0)
    directory = app.state.organizations
    directory.orgs[w.org] = OrganizationState(w.org, limits={"campaigns": 1})
    await create_campaign(client, tokens, w)
    r = await client.post(
        "/v1/campaigns", json=w.body(), headers=tokens.headers(organization_id=w.org)
    )
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "plan_limit_exceeded" and r.json()["limit"] == "campaigns"
