"""The list's raw read path: the same JSON as the model, the same rows as the
SQLAlchemy query for every filter, pages picked inside the search that stay stable
through deletions and restores, and tenant isolation."""

import uuid
from datetime import timedelta

from sqlalchemy import text

from pytake_contacts.schemas import Contact
from pytake_contacts.search import ContactFilter, page_query

from .helpers import T0, create_contact, pages


async def _ids(client, headers, **params):
    return [
        c["id"] for page in await pages(client, "/v1/contacts", headers, **params) for c in page
    ]


async def test_list_items_are_the_models_json_with_tags(client, org, agent, tokens):
    admin = tokens.headers(organization_id=org, role="org_admin")
    c = await create_contact(client, agent, phone="+5511987654321", name="José", company="Ávila")
    bare = await create_contact(client, agent, phone="+5511987650000", name="Josefa")

    async def listed_is_single(names: list[str]) -> None:
        listed = (await client.get("/v1/contacts", params={"q": "jose"}, headers=agent)).json()
        single = (await client.get(f"/v1/contacts/{c['id']}", headers=agent)).json()
        assert listed["items"][0] == single
        assert [t["name"] for t in single["tags"]] == names
        assert listed["items"][1]["id"] == bare["id"] and listed["items"][1]["tags"] == []
        assert Contact.model_validate(single).model_dump(mode="json") == single

    # The list's tags come from the ids the page function hands back (migration 0008):
    # they follow tagging, untagging and tag deletion, in the single contact's order.
    vip = (await client.post("/v1/tags", json={"name": "VIP"}, headers=admin)).json()
    await client.put(f"/v1/contacts/{c['id']}/tags/{vip['id']}", headers=agent)
    await listed_is_single(["VIP"])
    late = (await client.post("/v1/tags", json={"name": "atrasado"}, headers=admin)).json()
    await client.put(f"/v1/contacts/{c['id']}/tags/{late['id']}", headers=agent)
    await listed_is_single(["atrasado", "VIP"])
    await client.delete(f"/v1/contacts/{c['id']}/tags/{late['id']}", headers=agent)
    await listed_is_single(["VIP"])
    await client.put(f"/v1/contacts/{c['id']}/tags/{late['id']}", headers=agent)
    assert (await client.delete(f"/v1/tags/{vip['id']}", headers=admin)).status_code == 204
    await listed_is_single(["atrasado"])
    other = tokens.headers(organization_id=uuid.uuid4(), role="agent")
    assert (await client.get("/v1/contacts", params={"q": "jose"}, headers=other)).json()[
        "items"
    ] == []


async def test_list_json_matches_the_model_for_every_kind_of_value(app, client, org, agent, admin):
    r = await client.post(
        "/v1/contact-attributes",
        json={"key": "score", "label": "Score", "type": "number"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    body = {"name": 'Ana "Quote" \\ Ñ', "email": "ana@x.io", "attributes": {"score": 1.5}}
    c = await create_contact(client, agent, phone="+5511987654321", **body)
    b = await create_contact(client, agent, phone="+5511987654322", name="Bruno")
    await client.post(f"/v1/contacts/{b['id']}/block", json={"reason": "spam"}, headers=agent)
    await client.post(
        f"/v1/contacts/{b['id']}/consent",
        json={"marketing_opt_in": True, "source": "form"},
        headers=agent,
    )
    async with app.state.db.transaction(organization_id=org) as s:
        # a whole second (no fraction) and a single microsecond
        await s.execute(
            text(
                "UPDATE contacts SET created_at = '2026-01-01 12:00:00+00',"
                " last_interaction_at = '2026-01-01 12:00:00.000001+00' WHERE id = :id"
            ),
            {"id": c["id"]},
        )
    listed = (await client.get("/v1/contacts", headers=agent)).json()["items"]
    singles = [(await client.get(f"/v1/contacts/{x['id']}", headers=agent)).json() for x in (c, b)]
    assert listed == singles
    assert listed[0]["created_at"] == "2026-01-01T12:00:00Z"
    assert listed[0]["last_interaction_at"] == "2026-01-01T12:00:00.000001Z"
    assert listed[1]["blocked"] is True and listed[1]["marketing_opt_in"] is True


async def test_search_pages_stay_stable_through_deletes_and_restores(client, org, agent):
    made = [
        await create_contact(client, agent, phone=f"+551198765{i:04d}", name=f"Maria {i}")
        for i in range(7)
    ]
    assert await _ids(client, agent, q="maria", limit=2) == [c["id"] for c in made]
    await client.delete(f"/v1/contacts/{made[1]['id']}", headers=agent)
    await client.delete(f"/v1/contacts/{made[4]['id']}", headers=agent)
    expected = [c["id"] for i, c in enumerate(made) if i not in (1, 4)]
    assert await _ids(client, agent, q="maria", limit=2) == expected
    assert await _ids(client, agent, q="98765", limit=3) == expected  # phone digits
    # a restored contact comes back with a new created_at: last in the order
    restored = await create_contact(client, agent, phone=made[1]["phone"], name="Maria again")
    assert restored["id"] == made[1]["id"]
    assert await _ids(client, agent, q="maria", limit=2) == [*expected, made[1]["id"]]


async def test_raw_list_and_sqlalchemy_query_agree_for_every_filter(
    app, client, org, agent, tokens
):
    admin = tokens.headers(organization_id=org, role="org_admin")
    tag = (await client.post("/v1/tags", json={"name": "Lead"}, headers=admin)).json()
    people = []
    for i, (name, company) in enumerate(
        [("Ana Souza", "Acme"), ("João Silva", "Acme"), ("Jon Smith", None), ("Zoë", "Hooli")]
    ):
        people.append(
            await create_contact(
                client, agent, phone=f"+55119000{i:05d}", name=name, company=company
            )
        )
    await client.put(f"/v1/contacts/{people[0]['id']}/tags/{tag['id']}", headers=agent)
    await client.put(f"/v1/contacts/{people[2]['id']}/tags/{tag['id']}", headers=agent)
    await client.post(f"/v1/contacts/{people[1]['id']}/block", json={}, headers=agent)
    await client.post(
        f"/v1/contacts/{people[2]['id']}/consent",
        json={"marketing_opt_in": True, "source": "form"},
        headers=agent,
    )
    future = (T0 + timedelta(days=3650)).isoformat()
    cases = [
        {},
        {"q": "acme"},
        {"q": "john"},
        {"q": "joao silvaa"},
        {"q": "9000"},
        {"q": "acme", "blocked": "true"},
        {"q": "acme", "blocked": "false"},
        {"tag_id": tag["id"]},
        {"q": "a", "tag_id": tag["id"]},
        {"opted_in": "true"},
        {"opted_in": "false"},
        {"unassigned": "true"},
        {"created_to": future},
        {"created_from": future},
        {"last_interaction_from": future},
    ]
    names = {
        "blocked": "blocked",
        "opted_in": "opted_in",
        "unassigned": "unassigned",
    }
    for params in cases:
        api = await _ids(client, agent, limit=1, **params)
        f = ContactFilter(
            q=params.get("q"),
            tag_id=uuid.UUID(params["tag_id"]) if "tag_id" in params else None,
            created_from=T0 + timedelta(days=3650) if "created_from" in params else None,
            created_to=T0 + timedelta(days=3650) if "created_to" in params else None,
            interacted_from=(
                T0 + timedelta(days=3650) if "last_interaction_from" in params else None
            ),
            **{names[k]: v == "true" for k, v in params.items() if k in names},
        )
        async with app.state.db.transaction(organization_id=org) as s:
            ids = (await s.execute(page_query(org, f, 100, None))).mappings().all()
        assert api == [str(r["id"]) for r in ids], params
