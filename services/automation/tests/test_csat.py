"""CSAT: settings, one survey per resolution (list inside the window, template outside,
none to blocked contacts), the rating and comment recorded once, responses and report."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pytake_automation.csat import rating_of
from pytake_automation.tables import csat_surveys

from .conversation_events import Conversation, contact_blocked, emitted
from .helpers import deliver

URL = "/v1/automation/csat"


async def enable(client, tokens, org, **extra):
    admin = tokens.headers(organization_id=org, role="org_admin")
    body = {"enabled": True, "question": "How did we do?", **extra}
    r = await client.put(URL, json=body, headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def surveys(app, org):
    async with app.state.db.transaction(organization_id=org) as s:
        return (await s.execute(select(csat_surveys).order_by(csat_surveys.c.sent_at))).all()


async def asked(app, org) -> list[dict]:
    return [
        a for a in await emitted(app, org, "actions_requested.v1") if a["source"]["kind"] == "csat"
    ]


async def test_settings_defaults_put_and_validation(client, tokens):
    org = uuid.uuid4()
    viewer = tokens.headers(organization_id=org, role="viewer")
    r = await client.get(URL, headers=viewer)
    assert r.status_code == 200 and r.json()["enabled"] is False
    saved = await enable(client, tokens, org, template_name="csat_survey", comment_prompt="Why?")
    assert (await client.get(URL, headers=viewer)).json() == saved
    admin = tokens.headers(organization_id=org, role="org_admin")
    assert (await client.put(URL, json={"question": ""}, headers=admin)).status_code == 422
    assert (await client.put(URL, json={"nope": 1}, headers=admin)).status_code == 422
    assert (await client.put(URL, json={"enabled": True}, headers=viewer)).status_code == 403
    # another organization has its own (default) settings
    other = tokens.headers(organization_id=uuid.uuid4(), role="viewer")
    assert (await client.get(URL, headers=other)).json()["enabled"] is False


async def test_one_list_survey_per_resolution_inside_the_window(app, settings, client, tokens):
    conv = Conversation()
    await enable(client, tokens, conv.org)
    resolved = conv.status("open", "resolved")
    await deliver(app, settings, conv.opened(), conv.says("help"), resolved, resolved)
    # the same resolution under another event id
    await deliver(
        app,
        settings,
        conv.status("open", "resolved", at=datetime.fromisoformat(resolved.data["at"])),
    )
    [request] = await asked(app, conv.org)
    [action] = request["actions"]
    assert action["type"] == "send_interactive"
    interactive = action["interactive"]
    assert interactive["type"] == "list" and interactive["body"]["text"] == "How did we do?"
    rows = interactive["action"]["sections"][0]["rows"]
    assert len(rows) == 5 and all(len(r["title"]) <= 24 for r in rows)
    [survey] = await surveys(app, conv.org)
    assert request["source"]["id"] == str(survey.id)
    assert rows[0]["id"] == f"csat:{survey.id}:5"
    assert survey.channel == "interactive"


async def test_outside_the_window_a_template_or_nothing_and_never_to_blocked(
    app, settings, client, tokens
):
    old = datetime.now(UTC) - timedelta(days=3)
    conv = Conversation()
    await enable(client, tokens, conv.org, template_name="csat_survey", template_language="pt_BR")
    await deliver(
        app, settings, conv.opened(old), conv.says("hi", at=old), conv.status("open", "resolved")
    )
    [request] = await asked(app, conv.org)
    assert request["actions"][0]["type"] == "send_template"
    assert (request["actions"][0]["name"], request["actions"][0]["language"]) == (
        "csat_survey",
        "pt_BR",
    )

    no_template = Conversation()
    await enable(client, tokens, no_template.org)
    await deliver(
        app,
        settings,
        no_template.opened(old),
        no_template.says("hi", at=old),
        no_template.status("open", "resolved"),
    )
    assert await asked(app, no_template.org) == []

    blocked = Conversation()
    await enable(client, tokens, blocked.org)
    await deliver(
        app,
        settings,
        blocked.opened(),
        blocked.says("hi"),
        contact_blocked(blocked.org, blocked.contact_id),
        blocked.status("open", "resolved"),
    )
    assert await asked(app, blocked.org) == []
    assert await surveys(app, blocked.org) == []


async def test_disabled_sends_nothing_and_a_contact_is_not_surveyed_twice_in_a_row(
    app, settings, client, tokens
):
    conv = Conversation()
    await deliver(app, settings, conv.opened(), conv.says("hi"), conv.status("open", "resolved"))
    assert await asked(app, conv.org) == []  # CSAT is off by default
    await enable(client, tokens, conv.org)
    await deliver(app, settings, conv.status("open", "resolved"))
    await deliver(app, settings, conv.opened(), conv.status("open", "resolved"))
    assert len(await asked(app, conv.org)) == 1  # min_interval_hours: 24


async def test_rating_then_comment_recorded_once_and_reported(app, settings, client, tokens):
    agent, support = uuid.uuid4(), uuid.uuid4()
    conv = Conversation()
    await enable(client, tokens, conv.org, comment_prompt="Tell us more?")
    await deliver(
        app,
        settings,
        conv.opened(),
        conv.says("hi"),
        conv.assigned(agent, support),
        conv.status("open", "resolved"),
    )
    [survey] = await surveys(app, conv.org)
    choice = {"kind": "list", "id": f"csat:{survey.id}:4", "title": "4 - Good"}
    rating = conv.says("4 - Good", reply=choice)
    await deliver(app, settings, rating, rating, conv.says("4 - Good", reply=choice))
    comment = conv.says("Quick and kind, thanks")
    await deliver(app, settings, comment, comment, conv.says("and one more thing"))
    [recorded] = await emitted(app, conv.org, "csat.recorded.v1")
    assert (recorded["rating"], recorded["agent_id"], recorded["department_id"]) == (
        4,
        str(agent),
        str(support),
    )
    [commented] = await emitted(app, conv.org, "csat.commented.v1")
    assert commented["comment"] == "Quick and kind, thanks"
    prompts = [a for a in await asked(app, conv.org) if a["actions"][0]["type"] == "send_text"]
    assert [p["actions"][0]["text"] for p in prompts] == ["Tell us more?"]

    viewer = tokens.headers(organization_id=conv.org, role="viewer")
    page = (await client.get(f"{URL}/responses", headers=viewer)).json()
    [item] = page["items"]
    assert (item["rating"], item["comment"], item["agent_id"]) == (
        4,
        "Quick and kind, thanks",
        str(agent),
    )
    other_agent = await client.get(
        f"{URL}/responses", params={"agent_id": str(uuid.uuid4())}, headers=viewer
    )
    assert other_agent.json()["items"] == []
    report = (await client.get(f"{URL}/report", headers=viewer)).json()
    org_scores = report["organization"]
    assert (
        org_scores["sent"],
        org_scores["answered"],
        org_scores["average"],
        org_scores["csat"],
    ) == (1, 1, 4.0, 1.0)
    assert org_scores["distribution"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}
    assert [a["agent_id"] for a in report["agents"]] == [str(agent)]
    assert [d["department_id"] for d in report["departments"]] == [str(support)]
    other = tokens.headers(organization_id=uuid.uuid4(), role="viewer")
    assert (await client.get(f"{URL}/report", headers=other)).json()["organization"]["sent"] == 0
    assert (await client.get(f"{URL}/responses", headers=other)).json()["items"] == []
    bad = await client.get(f"{URL}/report", params={"from": "2026-12-01T00:00:00"}, headers=viewer)
    assert bad.status_code == 422


async def test_a_typed_number_rates_and_another_organizations_survey_id_does_not(
    app, settings, client, tokens
):
    conv, stranger = Conversation(), Conversation()
    await enable(client, tokens, conv.org)
    await enable(client, tokens, stranger.org)
    await deliver(app, settings, conv.opened(), conv.says("hi"), conv.status("open", "resolved"))
    [survey] = await surveys(app, conv.org)
    forged = {"kind": "list", "id": f"csat:{survey.id}:1", "title": "1 - Very poor"}
    await deliver(app, settings, stranger.says("1", reply=forged))
    assert await emitted(app, stranger.org, "csat.recorded.v1") == []
    await deliver(app, settings, conv.says("no thanks"), conv.says(" 5 "))
    [recorded] = await emitted(app, conv.org, "csat.recorded.v1")
    assert recorded["rating"] == 5


def test_rating_of_reads_list_ids_and_bare_numbers_only():
    survey = uuid.uuid4()
    assert rating_of(f"csat:{survey}:3", "3 - Okay") == (survey, 3)
    assert rating_of(f"csat:{survey}:9", None) == (survey, None)
    assert rating_of("csat:garbage", None) == (None, None)
    assert rating_of(None, "5") == (None, 5)
    assert rating_of(None, "4/5") == (None, 4)
    assert rating_of("other-button", "2 - Poor") == (None, 2)
    for text in ("2 people came", "15", "0", "I'd say 5", "", None):
        assert rating_of(None, text) == (None, None)
