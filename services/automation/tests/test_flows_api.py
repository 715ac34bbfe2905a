"""``/v1/automation/flows``: drafts, publish checks, immutable versions, test runs, isolation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from pytake_common.mechanics import outbox
from pytake_devstack.flow_sample import triage_flow

DEPT = "7b0f4a53-1f7e-4c55-9a40-8b7cf4d6b001"
URL = "/v1/automation/flows"


def four_steps(prompt: str = "How can we help?") -> dict[str, Any]:
    """Buttons, a name, an e-mail, then a hand-off to a department."""
    return triage_flow(DEPT, prompt)


async def _create(client: Any, tokens: Any, org: uuid.UUID, **body: Any) -> dict[str, Any]:
    payload = {"name": "Support triage", "definition": four_steps(), **body}
    r = await client.post(URL, json=payload, headers=tokens.headers(organization_id=org))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_create_read_list_patch_delete(client, tokens):
    org = uuid.uuid4()
    headers = tokens.headers(organization_id=org) | {"Idempotency-Key": "create-1"}
    body = {"name": "Triage", "definition": four_steps()}
    first = await client.post(URL, json=body, headers=headers)
    assert first.status_code == 201, first.text
    flow = first.json()
    assert first.headers["Location"] == f"{URL}/{flow['id']}"
    assert flow["published_version"] is None and flow["definition"]["start"] == "topic"
    assert flow["definition"]["nodes"][0]["validate"] == {"kind": "option"}
    replay = await client.post(URL, json=body, headers=headers)
    assert replay.status_code == 201 and replay.json()["id"] == flow["id"]

    second = await _create(client, tokens, org, name="Other")
    h = tokens.headers(organization_id=org)
    page = (await client.get(URL, params={"limit": 1}, headers=h)).json()
    assert [f["id"] for f in page["items"]] == [flow["id"]] and page["next_cursor"]
    rest = (await client.get(URL, params={"cursor": page["next_cursor"]}, headers=h)).json()
    assert [f["id"] for f in rest["items"]] == [second["id"]] and rest["next_cursor"] is None

    r = await client.patch(f"{URL}/{flow['id']}", json={"name": "Renamed"}, headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert (await client.patch(f"{URL}/{flow['id']}", json={}, headers=h)).status_code == 422
    assert (await client.delete(f"{URL}/{flow['id']}", headers=h)).status_code == 204
    assert (await client.get(f"{URL}/{flow['id']}", headers=h)).status_code == 404


async def test_a_structurally_broken_draft_is_refused(client, tokens):
    h = tokens.headers(organization_id=uuid.uuid4())
    body = {"name": "x", "definition": {"start": "a", "nodes": [{"id": "a", "type": "exec"}]}}
    r = await client.post(URL, json=body, headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_publish_names_each_problem_then_freezes_versions(client, tokens, app):
    org = uuid.uuid4()
    h = tokens.headers(organization_id=org)
    broken = four_steps()
    broken["nodes"][0]["prompt"]["buttons"] += [
        {"id": "billing", "title": "Billing"},
        {"id": "other", "title": "Something else entirely"},
    ]
    broken["nodes"][1]["next"] = "nowhere"
    flow = await _create(client, tokens, org, definition=broken)
    r = await client.post(f"{URL}/{flow['id']}/publish", headers=h)
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "flow_invalid" and problem["detail"].startswith("node '")
    found = {(p["node_id"], p["field"], p["code"]) for p in problem["problems"]}
    assert found == {
        ("topic", "prompt.buttons", "meta_limit"),
        ("topic", "prompt.buttons[3].title", "meta_limit"),
        ("name", "next", "dangling_edge"),
        ("email", "id", "unreachable_node"),
        ("human", "id", "unreachable_node"),
    }

    await client.patch(f"{URL}/{flow['id']}", json={"definition": four_steps("v1?")}, headers=h)
    keyed = h | {"Idempotency-Key": "pub-1"}
    v1 = await client.post(f"{URL}/{flow['id']}/publish", headers=keyed)
    assert v1.status_code == 201 and v1.json()["version"] == 1
    again = await client.post(f"{URL}/{flow['id']}/publish", headers=keyed)
    assert again.status_code == 201 and again.json()["version"] == 1  # replayed, not re-published

    await client.patch(f"{URL}/{flow['id']}", json={"definition": four_steps("v2?")}, headers=h)
    v2 = await client.post(f"{URL}/{flow['id']}/publish", headers=h)
    assert v2.json()["version"] == 2
    versions = (await client.get(f"{URL}/{flow['id']}/versions", headers=h)).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["definition"]["nodes"][0]["prompt"]["body"] == "v1?"
    assert (await client.get(f"{URL}/{flow['id']}", headers=h)).json()["published_version"] == 2

    async with app.state.db.transaction(bypass_rls=True) as s:
        types = [e["type"] for e in (await s.execute(select(outbox.c.event))).scalars()]
    published = [t for t in types if t == "pytake.automation.flow.published.v1"]
    assert len(published) == 2 and "pytake.automation.flow.created.v1" in types


async def test_http_nodes_publish_only_to_allow_listed_hosts(client, tokens):
    org = uuid.uuid4()
    h = tokens.headers(organization_id=org)
    definition = {
        "start": "h",
        "nodes": [
            {"id": "h", "type": "http", "url": "https://api.shop.example/o/{{id}}", "next": "e"},
            {"id": "e", "type": "end"},
        ],
    }
    flow = await _create(client, tokens, org, definition=definition)
    r = await client.post(f"{URL}/{flow['id']}/publish", headers=h)
    assert r.status_code == 422 and r.json()["problems"][0]["code"] == "host_not_allowed"
    hosts_url = "/v1/automation/flow-http-hosts"
    bad = await client.put(hosts_url, json={"hosts": ["https://x.example/path"]}, headers=h)
    assert bad.status_code == 422
    put = await client.put(hosts_url, json={"hosts": ["API.shop.example."]}, headers=h)
    assert put.json() == {"hosts": ["api.shop.example"]}
    assert (await client.get(hosts_url, headers=h)).json() == {"hosts": ["api.shop.example"]}
    assert (await client.post(f"{URL}/{flow['id']}/publish", headers=h)).status_code == 201
    other = tokens.headers(organization_id=uuid.uuid4())
    assert (await client.get(hosts_url, headers=other)).json() == {"hosts": []}


async def test_test_run_gives_a_transcript_and_sends_nothing(client, tokens, app):
    org = uuid.uuid4()
    h = tokens.headers(organization_id=org)
    flow = await _create(client, tokens, org)
    async with app.state.db.transaction(bypass_rls=True) as s:
        before = len((await s.execute(select(outbox.c.id))).all())
    inputs = [
        {"reply": {"kind": "button", "id": "support", "title": "Support"}},
        {"text": "Ana"},
        {"text": "not an email"},
        {"text": "ana@example.com"},
    ]
    r = await client.post(f"{URL}/{flow['id']}/test", json={"inputs": inputs}, headers=h)
    assert r.status_code == 200, r.text
    t = r.json()
    assert [turn["event"] for turn in t["turns"]] == ["start", "reply", "text", "text", "text"]
    assert t["turns"][0]["actions"][0]["type"] == "send_interactive"
    assert t["turns"][0]["status"] == "waiting_reply" and t["turns"][0]["timer_seconds"] == 86400
    assert [a["text"] for a in t["turns"][2]["actions"]] == ["Thanks Ana. Your e-mail?"]
    assert t["turns"][3]["actions"][0]["text"] == "That is not an e-mail address."
    last = [a["type"] for a in t["turns"][4]["actions"]]
    assert last == ["set_attribute", "send_text", "add_note", "assign"]
    assert t["status"] == "ended" and t["end_reason"] == "handoff"
    assert t["answers"][0] == {
        "node_id": "topic",
        "label": "Topic",
        "value": "support",
        "shown": "Support",
    }
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert len((await s.execute(select(outbox.c.id))).all()) == before

    bad = await client.post(f"{URL}/{flow['id']}/test", json={"version": 1}, headers=h)
    assert bad.status_code == 404  # never published
    wrong = await client.post(
        f"{URL}/{flow['id']}/test", json={"inputs": [{"text": "a", "timeout": True}]}, headers=h
    )
    assert wrong.status_code == 422


async def test_another_organizations_flow_is_404_everywhere(client, tokens):
    flow = await _create(client, tokens, uuid.uuid4())
    other = tokens.headers(organization_id=uuid.uuid4())
    base = f"{URL}/{flow['id']}"
    calls = [
        client.get(base, headers=other),
        client.patch(base, json={"name": "mine"}, headers=other),
        client.delete(base, headers=other),
        client.get(f"{base}/versions", headers=other),
        client.post(f"{base}/publish", headers=other),
        client.post(f"{base}/test", json={}, headers=other),
    ]
    for call in calls:
        r = await call
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "not_found"
    assert (await client.get(URL, headers=other)).json()["items"] == []


async def test_agents_read_but_do_not_edit(client, tokens):
    org = uuid.uuid4()
    flow = await _create(client, tokens, org)
    agent = tokens.headers(organization_id=org, role="agent")
    assert (await client.get(f"{URL}/{flow['id']}", headers=agent)).status_code == 200
    r = await client.post(URL, json={"name": "x", "definition": four_steps()}, headers=agent)
    assert r.status_code == 403
    assert (await client.post(f"{URL}/{flow['id']}/publish", headers=agent)).status_code == 403
