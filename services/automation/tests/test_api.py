"""The rules and settings API: validation, roles, Idempotency-Key, pages, another
organization's ids (404), dry-run, rule events."""

import uuid

import pytest

from .helpers import Chat, deliver, make_rule

BASE = "/v1/automation/rules"


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
def admin(tokens, org):
    return tokens.headers(organization_id=org, role="org_admin")


@pytest.mark.parametrize(
    "body",
    [
        {"trigger": {"type": "no_agent_reply"}},  # minutes required
        {"trigger": {"type": "message_received", "minutes": 5}},
        {"trigger": {"type": "message_received", "statuses": ["open"]}},
        {"actions": []},
        {"actions": [{"type": "send_text"}]},
        {"actions": [{"type": "launch_rockets"}]},
        {
            "actions": [
                {
                    "type": "assign",
                    "agent_id": str(uuid.uuid4()),
                    "department_id": str(uuid.uuid4()),
                }
            ]
        },
        {"actions": [{"type": "send_text", "text": "x", "action_id": str(uuid.uuid4())}]},
        {"conditions": [{"type": "text_contains", "words": ["!!!"]}]},
        {"conditions": [{"type": "regex", "pattern": ".*"}]},
        {"conditions": [{"type": "contact_attribute", "key": "k"}]},
    ],
)
async def test_invalid_rules_are_422(client, admin, body):
    base = {
        "name": "r",
        "trigger": {"type": "message_received"},
        "actions": [{"type": "add_note", "text": "x"}],
    }
    r = await client.post(BASE, json=base | body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_crud_events_roles_and_pages(app, client, tokens, org, admin):
    viewer = tokens.headers(organization_id=org, role="viewer")
    body = {
        "name": "vip",
        "trigger": {"type": "message_received"},
        "actions": [{"type": "add_tag", "tag_name": "vip"}],
    }
    assert (
        await client.post(
            BASE, json=body, headers=tokens.headers(organization_id=org, role="agent")
        )
    ).status_code == 403
    first = await client.post(BASE, json=body, headers={**admin, "Idempotency-Key": "k1"})
    again = await client.post(BASE, json=body, headers={**admin, "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    rule = first.json()
    assert rule["actions"] == [{"type": "add_tag", "tag_id": None, "tag_name": "vip"}]
    for i in range(3):
        await make_rule(client, tokens, org, name=f"r{i}", position=i + 1)
    page = await client.get(BASE, params={"limit": 2}, headers=viewer)
    assert [r["name"] for r in page.json()["items"]] == ["vip", "r0"]
    rest = await client.get(BASE, params={"cursor": page.json()["next_cursor"]}, headers=viewer)
    assert [r["name"] for r in rest.json()["items"]] == ["r1", "r2"] and rest.json()[
        "next_cursor"
    ] is None
    r = await client.patch(
        f"{BASE}/{rule['id']}",
        json={"enabled": False, "trigger": {"type": "unassigned", "minutes": 10}},
        headers=admin,
    )
    assert (
        r.status_code == 200
        and r.json()["enabled"] is False
        and r.json()["trigger"]["minutes"] == 10
    )
    r = await client.patch(
        f"{BASE}/{rule['id']}", json={"trigger": {"type": "no_agent_reply"}}, headers=admin
    )
    assert r.status_code == 422
    assert (await client.delete(f"{BASE}/{rule['id']}", headers=admin)).status_code == 204
    assert (await client.get(f"{BASE}/{rule['id']}", headers=viewer)).status_code == 404

    from sqlalchemy import select

    from pytake_common.mechanics import outbox

    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (
            (
                await s.execute(
                    select(outbox.c.event).where(outbox.c.key == rule["id"]).order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert [e["type"].split(".")[-2] for e in events] == ["created", "updated", "deleted"]
    assert [e["data"]["version"] for e in events] == [1, 5, 6]


async def test_another_organizations_rule_is_404_everywhere(client, tokens, org, admin):
    rule = await make_rule(client, tokens, uuid.uuid4())
    for method, path, body in [
        ("GET", f"{BASE}/{rule['id']}", None),
        ("PATCH", f"{BASE}/{rule['id']}", {"name": "mine"}),
        ("DELETE", f"{BASE}/{rule['id']}", None),
        ("GET", f"{BASE}/{rule['id']}/runs", None),
    ]:
        r = await client.request(method, path, json=body, headers=admin)
        assert r.status_code == 404, (method, path, r.text)
    r = await client.post(
        f"{BASE}/dry-run", json={"conversation_id": str(uuid.uuid4())}, headers=admin
    )
    assert r.status_code == 404


async def test_dry_run_saved_rules_and_an_inline_one(app, settings, client, tokens, org, admin):
    tag = uuid.uuid4()
    await make_rule(
        client,
        tokens,
        org,
        name="price",
        conditions=[{"type": "text_contains", "words": ["preço"]}],
        actions=[{"type": "send_text", "text": "Tabela: ..."}],
        stop_processing=True,
    )
    await make_rule(
        client,
        tokens,
        org,
        name="vip",
        position=5,
        conditions=[{"type": "contact_tag", "tag_id": str(tag)}],
    )
    r = await client.post(f"{BASE}/dry-run", json={"text": "Qual o PREÇO?"}, headers=admin)
    assert r.status_code == 200, r.text
    assert [m["name"] for m in r.json()["matched"]] == ["price"]
    r = await client.post(
        f"{BASE}/dry-run",
        json={"text": "oi", "conversation": {"tag_ids": [str(tag)]}},
        headers=admin,
    )
    assert [m["name"] for m in r.json()["matched"]] == ["vip"]
    chat = Chat(org)
    await deliver(app, settings, chat.opened(), chat.tagged(tag))
    r = await client.post(
        f"{BASE}/dry-run", json={"text": "oi", "conversation_id": str(chat.id)}, headers=admin
    )
    assert [m["name"] for m in r.json()["matched"]] == ["vip"]
    inline = {
        "name": "try",
        "trigger": {"type": "message_received"},
        "conditions": [{"type": "business_hours", "state": "closed"}],
        "actions": [{"type": "add_note", "text": "n"}],
    }
    r = await client.post(
        f"{BASE}/dry-run", json={"rule": inline, "business_hours": "closed"}, headers=admin
    )
    assert r.json()["matched"] == [
        {
            "rule_id": None,
            "name": "try",
            "actions": [{"type": "add_note", "text": "n"}],
            "stop_processing": False,
        }
    ]
    from .helpers import requested

    assert await requested(app, org) == []  # a dry run asks nothing


async def test_settings_defaults_patch_and_roles(client, tokens, org, admin):
    r = await client.get(
        "/v1/automation/settings", headers=tokens.headers(organization_id=org, role="viewer")
    )
    assert r.json() == {
        "away_message_interval_minutes": 720,
        "auto_resolve_message": None,
        "actions_per_conversation_per_minute": None,
    }
    assert (
        await client.patch(
            "/v1/automation/settings", json={"away_message_interval_minutes": 0}, headers=admin
        )
    ).status_code == 422
    assert (
        await client.patch("/v1/automation/settings", json={"x": 1}, headers=admin)
    ).status_code == 422
    r = await client.patch(
        "/v1/automation/settings",
        json={"auto_resolve_message": "Tchau"},
        headers=tokens.headers(organization_id=org, role="agent"),
    )
    assert r.status_code == 403
    r = await client.patch(
        "/v1/automation/settings", json={"auto_resolve_message": "Tchau"}, headers=admin
    )
    assert r.json()["auto_resolve_message"] == "Tchau"
    other = await client.get(
        "/v1/automation/settings", headers=tokens.headers(organization_id=uuid.uuid4())
    )
    assert other.json()["auto_resolve_message"] is None
