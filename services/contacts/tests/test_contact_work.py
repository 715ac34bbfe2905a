import csv
import io
import uuid
from datetime import timedelta

from sqlalchemy import select

from pytake_contacts.tables import contact_interactions, users

from .helpers import T0, create_contact, deliver, emitted, event, pages, received, rows


async def _search(client, headers, **params):
    r = await client.get("/v1/contacts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return sorted(c["name"] for c in r.json()["items"])


async def test_search_tolerates_typos_accents_and_phone_formats_with_filters(
    client, org, agent, admin
):
    await create_contact(
        client, agent, phone="+5511987654321", name="José Conceição", company="Padaria Ávila"
    )
    await create_contact(
        client, agent, phone="+14155550123", name="John Smith", email="jsmith@acme.io"
    )
    await create_contact(
        client, agent, phone="+447911123456", name="Ana Müller", company="Acme Ltd"
    )
    assert await _search(client, agent, q="jose conceicao") == ["José Conceição"]
    assert await _search(client, agent, q="JOSÉ") == ["José Conceição"]
    assert await _search(client, agent, q="conceicau") == ["José Conceição"]  # typo
    assert await _search(client, agent, q="jon smith") == ["John Smith"]  # typo
    assert await _search(client, agent, q="muller") == ["Ana Müller"]
    assert await _search(client, agent, q="avila") == ["José Conceição"]  # company
    assert await _search(client, agent, q="jsmith@acme") == ["John Smith"]  # e-mail
    assert await _search(client, agent, q="acme") == ["Ana Müller", "John Smith"]
    assert await _search(client, agent, q="(11) 98765-4321") == ["José Conceição"]
    assert await _search(client, agent, q="+55 11 9876") == ["José Conceição"]
    assert await _search(client, agent, q="415 555") == ["John Smith"]
    assert await _search(client, agent, q="07911 123456"[1:]) == ["Ana Müller"]
    assert await _search(client, agent, q="zzzzqqq") == []

    r = await client.post("/v1/tags", json={"name": "VIP", "color": "#ff0000"}, headers=admin)
    tag = r.json()
    everyone = (await client.get("/v1/contacts", headers=agent)).json()["items"]
    ana = next(c for c in everyone if c["name"] == "Ana Müller")
    john = next(c for c in everyone if c["name"] == "John Smith")
    assert (
        await client.put(f"/v1/contacts/{ana['id']}/tags/{tag['id']}", headers=agent)
    ).status_code == 204
    await client.post(f"/v1/contacts/{john['id']}/block", json={"reason": "spam"}, headers=agent)
    await client.post(
        f"/v1/contacts/{john['id']}/consent",
        json={"marketing_opt_in": True, "source": "web form"},
        headers=agent,
    )
    assert await _search(client, agent, q="acme", tag_id=tag["id"]) == ["Ana Müller"]
    assert await _search(client, agent, q="acme", blocked="true") == ["John Smith"]
    assert await _search(client, agent, blocked="false") == ["Ana Müller", "José Conceição"]
    assert await _search(client, agent, opted_in="true") == ["John Smith"]
    future = (T0 + timedelta(days=3650)).isoformat()
    assert await _search(client, agent, created_from=future) == []
    assert len(await _search(client, agent, created_to=future)) == 3
    # Pagination with a search keeps a stable order and visits everything once.
    first = (await client.get("/v1/contacts", params={"q": "a", "limit": 1}, headers=agent)).json()
    assert first["next_cursor"]


async def test_tags_unique_names_colours_counts_and_deletion(app, client, org, agent, admin):
    r = await client.post("/v1/tags", json={"name": "Lead", "color": "#00ff00"}, headers=admin)
    assert r.status_code == 201 and r.json()["color"] == "#00FF00"
    tag = r.json()
    assert (await client.post("/v1/tags", json={"name": "lead"}, headers=admin)).status_code == 409
    r = await client.post("/v1/tags", json={"name": "x", "color": "red"}, headers=admin)
    assert r.status_code == 422
    assert (await client.post("/v1/tags", json={"name": "y"}, headers=agent)).status_code == 403
    c = await create_contact(client, agent, phone="+14155550123")
    for _ in range(2):  # tagging twice is one fact
        assert (
            await client.put(f"/v1/contacts/{c['id']}/tags/{tag['id']}", headers=agent)
        ).status_code == 204
    listed = (await client.get("/v1/tags", headers=agent)).json()["items"]
    assert [(t["name"], t["contact_count"]) for t in listed] == [("Lead", 1)]
    got = (await client.get(f"/v1/contacts/{c['id']}", headers=agent)).json()
    assert got["tags"] == [{"id": tag["id"], "name": "Lead", "color": "#00FF00"}]
    r = await client.patch(f"/v1/tags/{tag['id']}", json={"name": "Hot lead"}, headers=admin)
    assert r.json()["name"] == "Hot lead"
    assert (
        await client.delete(f"/v1/contacts/{c['id']}/tags/{tag['id']}", headers=agent)
    ).status_code == 204
    await client.put(f"/v1/contacts/{c['id']}/tags/{tag['id']}", headers=agent)
    assert (await client.delete(f"/v1/tags/{tag['id']}", headers=admin)).status_code == 204
    assert (await client.get(f"/v1/contacts/{c['id']}", headers=agent)).json()["tags"] == []
    types = [e["type"].removeprefix("pytake.contacts.") for e in await emitted(app, org)]
    assert types == [
        "tag.created.v1",
        "contact.created.v1",
        "contact.tagged.v1",
        "tag.updated.v1",
        "contact.untagged.v1",
        "contact.tagged.v1",
        "tag.deleted.v1",
    ]
    tagged = next(e for e in await emitted(app, org) if e["type"].endswith("tagged.v1"))
    assert tagged["data"] == {
        "contact_id": c["id"],
        "organization_id": str(org),
        "tag_id": tag["id"],
    }


def _user_event(org, kind, user_id, **data):
    return event(org, f"pytake.auth.user.{kind}.v1", {"user_id": str(user_id), **data})


async def test_assign_only_to_active_workers_of_the_org_and_timeline(
    app, client, tokens, org, agent
):
    ana, viewer, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = _user_event(
        org, "created", ana, email="a@x", full_name="Ana", role="agent", is_active=True
    )
    await deliver(app, created)
    await deliver(app, created)  # the same event twice
    await deliver(
        app,
        _user_event(
            org, "created", viewer, email="v@x", full_name="V", role="viewer", is_active=True
        ),
    )
    await deliver(
        app,
        _user_event(
            uuid.uuid4(), "created", other, email="o@x", full_name="O", role="agent", is_active=True
        ),
    )
    c = await create_contact(client, agent, phone="+14155550123")
    path = f"/v1/contacts/{c['id']}/assign"
    r = await client.post(path, json={"assignee_id": str(ana)}, headers=agent)
    assert r.status_code == 200 and r.json()["assignee_id"] == str(ana)
    for refused in (viewer, other, uuid.uuid4()):
        r = await client.post(path, json={"assignee_id": str(refused)}, headers=agent)
        assert r.status_code == 422 and r.json()["code"] == "invalid_assignee"
    await deliver(app, _user_event(org, "deactivated", ana))
    r = await client.post(path, json={"assignee_id": str(ana)}, headers=agent)
    assert r.status_code == 200  # unchanged is fine, nothing emitted
    await client.post(path, json={"assignee_id": None}, headers=agent)
    r = await client.post(path, json={"assignee_id": str(ana)}, headers=agent)
    assert r.status_code == 422
    # An older "updated" arriving late does not reactivate her.
    late = _user_event(
        org, "updated", ana, full_name="Ana", role="agent", is_active=True, changed=[]
    )
    late.time = created.time
    await deliver(app, late)
    async with app.state.db.transaction(organization_id=org) as s:
        assert (
            await s.execute(select(users.c.is_active).where(users.c.id == ana))
        ).scalar() is False
    assigned = [e["data"] for e in await emitted(app, org) if e["type"].endswith("assigned.v1")]
    assert assigned == [
        {"contact_id": c["id"], "organization_id": str(org), "assignee_id": str(ana)},
        {"contact_id": c["id"], "organization_id": str(org), "assignee_id": None},
    ]

    # Block, consent and conversation events make the timeline; redeliveries count once.
    await client.post(f"/v1/contacts/{c['id']}/block", json={"reason": "abuse"}, headers=agent)
    await client.post(f"/v1/contacts/{c['id']}/block", json={"reason": "again"}, headers=agent)
    await client.post(f"/v1/contacts/{c['id']}/unblock", headers=agent)
    await client.post(
        f"/v1/contacts/{c['id']}/consent",
        json={"marketing_opt_in": False, "source": "sms"},
        headers=agent,
    )
    conv, msg = uuid.uuid4(), uuid.uuid4()
    opened = event(
        org,
        "pytake.conversations.conversation.opened.v1",
        {
            "conversation_id": str(conv),
            "contact_id": c["id"],
            "number_id": str(uuid.uuid4()),
            "opened_at": T0.isoformat(),
        },
    )
    appended = event(
        org,
        "pytake.conversations.message.appended.v1",
        {
            "message_id": str(msg),
            "conversation_id": str(conv),
            "contact_id": c["id"],
            "direction": "outbound",
            "type": "text",
            "created_at": (T0 + timedelta(minutes=1)).isoformat(),
        },
    )
    status = event(
        org,
        "pytake.conversations.conversation.status_changed.v1",
        {
            "conversation_id": str(conv),
            "contact_id": c["id"],
            "old_status": "open",
            "new_status": "resolved",
            "changed_by": None,
            "at": (T0 + timedelta(minutes=2)).isoformat(),
        },
    )
    for ev in (opened, appended, status, opened, appended):
        await deliver(app, ev)
    again = appended.model_copy(update={"id": uuid.uuid4()})  # same fact, new event id
    await deliver(app, again)
    timeline = await pages(client, f"/v1/contacts/{c['id']}/timeline", agent, limit=3)
    kinds = [i["kind"] for page in timeline for i in page]
    assert sorted(kinds) == sorted(
        [
            "contact.created",
            "contact.assigned",
            "contact.assigned",
            "contact.blocked",
            "contact.unblocked",
            "contact.consent_changed",
            "conversation.opened",
            "message.outbound",
            "conversation.status_changed",
        ]
    )
    blocked = [e["data"] for e in await emitted(app, org) if e["type"].endswith(".blocked.v1")]
    assert len(blocked) == 1 and blocked[0]["reason"] == "abuse"
    consent = [
        e["data"] for e in await emitted(app, org) if e["type"].endswith("consent_changed.v1")
    ]
    assert consent[0]["marketing_opt_in"] is False and consent[0]["source"] == "sms"
    # A blocked contact's messages are still recorded.
    await client.post(f"/v1/contacts/{c['id']}/block", json={}, headers=agent)
    await deliver(app, received(org, wa_id="14155550123", at=T0 + timedelta(hours=1)))
    [row] = await rows(app, org)
    assert row["last_interaction_at"] == T0 + timedelta(hours=1) and row["blocked_at"] is not None


async def test_erase_removes_personal_data_and_tells_everyone(app, client, org, agent, admin):
    c = await create_contact(
        client, agent, phone="+14155550123", name="Secret", email="s@x.io", notes="n"
    )
    await client.post(f"/v1/contacts/{c['id']}/block", json={"reason": "private"}, headers=agent)
    assert (await client.post(f"/v1/contacts/{c['id']}/erase", headers=agent)).status_code == 403
    assert (await client.post(f"/v1/contacts/{c['id']}/erase", headers=admin)).status_code == 204
    [row] = await rows(app, org)
    assert (row["name"], row["phone"], row["email"], row["notes"], row["blocked_reason"]) == (
        None,
    ) * 5
    assert row["wa_id"] != "14155550123" and len(row["wa_id"]) == 64
    assert row["attributes"] == {} and row["erased_at"] is not None
    async with app.state.db.transaction(organization_id=org) as s:
        data = (await s.execute(select(contact_interactions.c.data))).scalars().all()
    assert all(d == {} for d in data)
    erased = [e for e in await emitted(app, org) if e["type"].endswith("erased.v1")]
    assert erased[0]["data"]["contact_id"] == c["id"]
    assert set(erased[0]["data"]) == {"contact_id", "organization_id", "erased_at"}
    assert (await client.get(f"/v1/contacts/{c['id']}", headers=agent)).status_code == 404
    # Writing again makes a fresh contact (same derived id), with nothing old back.
    await deliver(app, received(org, wa_id="14155550123", name="New"))
    got = (await client.get(f"/v1/contacts/{c['id']}", headers=agent)).json()
    assert (got["name"], got["email"], got["blocked"]) == ("New", None, True)


async def test_import_is_streamed_idempotent_by_phone_and_reports_rows(
    app, client, org, agent, admin
):
    await client.post(
        "/v1/contact-attributes",
        json={"key": "score", "label": "S", "type": "number"},
        headers=admin,
    )
    await create_contact(client, agent, phone="+14155550100", name="Existing")
    text = (
        "Phone,Name,Email,attributes.score\n"
        "+1 415 555 0100,Renamed,,7\n"
        "+14155550101,Nova,nova@x.io,\n"
        "garbage,Bad Phone,,\n"
        "+14155550102,Bad Email,not-an-email,\n"
        "+14155550103,Bad Score,,high\n"
        "\n"
        '+14155550104,"Quoted, Name",,3.5\n'
        "+14155550101,Nova Again,,\n"
    )
    headers = agent | {"Content-Type": "text/csv"}
    r = await client.post("/v1/contacts/import", content=text, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["updated"]) == (2, 2)
    assert [f["row"] for f in body["failed"]] == [3, 4, 5]
    assert body["failed"][0]["error"].startswith("invalid_phone")
    names = {row["phone"]: (row["name"], row["attributes"]) for row in await rows(app, org)}
    assert names == {
        "+14155550100": ("Renamed", {"score": 7}),
        "+14155550101": ("Nova Again", {}),
        "+14155550104": ("Quoted, Name", {"score": 3.5}),
    }
    events_before = len(await emitted(app, org))
    files = {"file": ("contacts.csv", text.encode(), "text/csv")}
    r = await client.post("/v1/contacts/import", files=files, headers=agent)
    assert r.status_code == 200, r.text
    # Only the phone listed twice moves ("Nova" then "Nova Again"); the end state is the same.
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 2, 2)
    assert len(await rows(app, org)) == 3
    assert len(await emitted(app, org)) == events_before + 2
    assert {row["phone"]: row["name"] for row in await rows(app, org)}[
        "+14155550101"
    ] == "Nova Again"

    r = await client.post("/v1/contacts/import", content="phone,shoe size\n", headers=headers)
    assert r.status_code == 422
    r = await client.post("/v1/contacts/import", content="name\nx\n", headers=headers)
    assert r.status_code == 422
    r = await client.post("/v1/contacts/import", content="phone,attributes.nope\n", headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "unknown_attribute"
    r = await client.post(
        "/v1/contacts/import", content="{}", headers=agent | {"Content-Type": "application/json"}
    )
    assert r.status_code == 415

    r = await client.get("/v1/contacts/export", params={"q": "nova"}, headers=agent)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(r.text)))
    assert [(e["name"], e["phone"]) for e in exported] == [("Nova Again", "'+14155550101")]
    r = await client.get("/v1/contacts/export", headers=agent)
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 3
    assert "attributes.score" in r.text.splitlines()[0]


async def test_another_organizations_ids_are_404_on_every_route(app, client, tokens, org, admin):
    theirs = uuid.uuid4()
    their_admin = tokens.headers(organization_id=theirs, role="org_admin")
    c = await create_contact(client, their_admin, phone="+14155550123")
    tag = (await client.post("/v1/tags", json={"name": "t"}, headers=their_admin)).json()
    await client.post(
        "/v1/contact-attributes",
        json={"key": "k", "label": "K", "type": "text"},
        headers=their_admin,
    )
    mine = await create_contact(client, admin, phone="+14155550199")
    cid, tid = c["id"], tag["id"]
    for method, path, body in [
        ("GET", f"/v1/contacts/{cid}", None),
        ("PATCH", f"/v1/contacts/{cid}", {"name": "x"}),
        ("DELETE", f"/v1/contacts/{cid}", None),
        ("POST", f"/v1/contacts/{cid}/block", {}),
        ("POST", f"/v1/contacts/{cid}/unblock", None),
        ("POST", f"/v1/contacts/{cid}/consent", {"marketing_opt_in": True, "source": "x"}),
        ("POST", f"/v1/contacts/{cid}/assign", {"assignee_id": None}),
        ("POST", f"/v1/contacts/{cid}/erase", None),
        ("GET", f"/v1/contacts/{cid}/timeline", None),
        ("PUT", f"/v1/contacts/{cid}/tags/{tid}", None),
        ("PUT", f"/v1/contacts/{mine['id']}/tags/{tid}", None),
        ("DELETE", f"/v1/contacts/{mine['id']}/tags/{tid}", None),
        ("PATCH", f"/v1/tags/{tid}", {"name": "mine"}),
        ("DELETE", f"/v1/tags/{tid}", None),
        ("DELETE", "/v1/contact-attributes/k", None),
    ]:
        r = await client.request(method, path, json=body, headers=admin)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/tags", headers=admin)).json()["items"] == []
    assert (await client.get("/v1/contact-attributes", headers=admin)).json()["items"] == []
    assert [c["id"] for c in (await client.get("/v1/contacts", headers=admin)).json()["items"]] == [
        mine["id"]
    ]
    r = await client.get("/v1/contacts", params={"tag_id": tid}, headers=admin)
    assert r.json()["items"] == []
    their = (await client.get(f"/v1/contacts/{cid}", headers=their_admin)).json()
    assert their["name"] is None and their["blocked"] is False
