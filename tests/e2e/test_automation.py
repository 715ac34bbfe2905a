"""Automation end to end: an after-hours away message reaches Meta, and a keyword rule tags
the contact and assigns the conversation (through the gateway only; every service a process)."""

from datetime import UTC, datetime
from typing import Any

from pytake_devstack.mainloop import poll


async def test_after_hours_away_message_and_a_keyword_rule_that_tags_and_assigns(loop):
    tenant = await loop.register("Automation Org")
    number = await loop.connect_number(tenant)
    headers = tenant.headers
    me = (await loop.call("GET", "/v1/auth/me", headers=headers)).json()

    # Closed today: a holiday (whatever the weekly hours say), with an away message.
    today = datetime.now(UTC).date().isoformat()
    settings = {
        "timezone": "UTC",
        "business_hours": {"monday": [{"start": "09:00", "end": "18:00"}]},
        "holidays": [{"date": today, "name": "Test holiday"}],
        "away_message": "We are closed today; we answer tomorrow from 9:00.",
    }
    r = await loop.call(
        "PATCH", "/v1/organizations/me", json={"settings": settings}, headers=headers
    )
    assert r.status_code == 200, r.text
    r = await loop.call("POST", "/v1/tags", json={"name": "Churn risk"}, headers=headers)
    assert r.status_code == 201, r.text
    rule = {
        "name": "cancellations",
        "trigger": {"type": "message_received"},
        "conditions": [{"type": "text_contains", "words": ["cancel", "refund"]}],
        "actions": [
            {"type": "add_tag", "tag_name": "churn risk"},
            {"type": "assign", "agent_id": me["id"]},
        ],
    }
    r = await loop.call("POST", "/v1/automation/rules", json=rule, headers=headers)
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]

    async def closed() -> bool | None:
        r = await loop.call(
            "POST", "/v1/automation/rules/dry-run", json={"text": "x"}, headers=headers
        )
        return True if r.status_code == 200 and r.json()["business_open"] is False else None

    await poll(closed, "automation to learn the organization's holiday")

    wamid = await loop.customer_says(number, "15559870001", "Hi, I want to CANCEL my plan")
    conv = await loop.conversation_with_message(tenant, wamid)

    away = settings["away_message"]

    async def away_sent() -> list[dict[str, Any]] | None:
        calls = await loop.graph_calls(number.phone_number_id)
        sent = [c for c in calls if c["body"].get("text", {}).get("body") == away]
        return sent or None

    [call] = await poll(away_sent, "the away message to reach the Graph API")
    assert call["body"]["to"] == "15559870001"

    async def handled() -> dict[str, Any] | None:
        r = await loop.call("GET", f"/v1/conversations/{conv['id']}", headers=headers)
        return r.json() if r.json().get("assignee_id") == me["id"] else None

    await poll(handled, "the rule to assign the conversation")
    contact_id = conv["contact_id"]

    async def tagged() -> list[str] | None:
        r = await loop.call("GET", f"/v1/contacts/{contact_id}", headers=headers)
        names = [t["name"] for t in r.json().get("tags", [])]
        return names or None

    assert await poll(tagged, "the rule to tag the contact") == ["Churn risk"]
    messages = await loop.messages(tenant, conv["id"])
    automatic = [m for m in messages if m["sender_type"] == "automation"]
    assert [(m["text"], m["direction"]) for m in automatic] == [(away, "outbound")]

    # A second message, still closed: no second away message, no second run of the rule.
    wamid = await loop.customer_says(number, "15559870001", "hello? cancel please")
    await loop.conversation_with_message(tenant, wamid)
    r = await loop.call("GET", f"/v1/automation/rules/{rule_id}/runs", headers=headers)
    assert r.status_code == 200

    async def two_runs() -> list[dict[str, Any]] | None:
        r = await loop.call("GET", f"/v1/automation/rules/{rule_id}/runs", headers=headers)
        items = r.json()["items"]
        return items if len(items) == 2 else None

    runs = await poll(two_runs, "the rule's second run")
    assert {x["outcome"] for x in runs} == {"acted"}
    calls = await loop.graph_calls(number.phone_number_id)
    assert [c["body"].get("text", {}).get("body") for c in calls].count(away) == 1

    # Another organization sees none of it.
    intruder = await loop.register("Intruder Automation Org")
    r = await loop.call("GET", f"/v1/automation/rules/{rule_id}", headers=intruder.headers)
    assert r.status_code == 404
