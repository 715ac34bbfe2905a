"""Search by words (migration 0005): typos, accents, prefixes and phone formats, ranked
exact > prefix > substring/typo with stable pages; the vocabulary follows edits, erasure
and deletes; no other tenant's contacts or words, ever."""

import uuid

import pytest
from sqlalchemy import text

from pytake_contacts.search import CONTACTS

from .helpers import T0, create_contact, pages


async def _names(client, headers, **params):
    """Every name the search lists, page by page, in the order the API gives them."""
    return [
        c["name"] for page in await pages(client, "/v1/contacts", headers, **params) for c in page
    ]


async def _insert(app, org, select: str, **params) -> None:
    """Many contacts at once: ``select`` gives (id, organization_id, wa_id, name,
    name_source, phone, created_at) rows, with ``:org`` and ``:t0`` bound."""
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            text(
                "INSERT INTO contacts (id, organization_id, wa_id, name, name_source, phone,"
                " created_at) " + select
            ),
            {"org": org, "t0": T0, **params},
        )


async def _vocabulary(app, org):
    async with app.state.db.transaction(organization_id=org) as s:
        words = await s.execute(
            text("SELECT word FROM contact_vocabulary WHERE organization_id = :org"),
            {"org": org},
        )
        return set(words.scalars())


async def test_typos_accents_prefixes_and_e_mail_words(client, agent):
    await create_contact(client, agent, phone="+5511987650001", name="Fernanda Gonçalves")
    await create_contact(
        client, agent, phone="+5511987650002", name="Søren Müller", email="soren.m@nordic.dk"
    )
    await create_contact(client, agent, phone="+5511987650003", name="Zoë Araújo", company="Hooli")
    assert await _names(client, agent, q="goncalves") == ["Fernanda Gonçalves"]  # accents
    assert await _names(client, agent, q="GONÇALVES") == ["Fernanda Gonçalves"]
    assert await _names(client, agent, q="gonsalves") == ["Fernanda Gonçalves"]  # typo
    assert await _names(client, agent, q="fern") == ["Fernanda Gonçalves"]  # type-ahead
    assert await _names(client, agent, q="fe go") == ["Fernanda Gonçalves"]  # two prefixes
    assert await _names(client, agent, q="soren muler") == ["Søren Müller"]
    assert await _names(client, agent, q="soren.m@nord") == ["Søren Müller"]  # e-mail words
    assert await _names(client, agent, q="nordic.dk") == ["Søren Müller"]
    assert await _names(client, agent, q="araujo hooli") == ["Zoë Araújo"]  # name + company
    assert await _names(client, agent, q="zoe") == ["Zoë Araújo"]
    assert await _names(client, agent, q="ooli") == ["Zoë Araújo"]  # inside a word
    assert await _names(client, agent, q="fernanda hooli") == []  # every word must match
    assert await _names(client, agent, q="xyzzy") == []
    assert await _names(client, agent, q="...") == []


async def test_phone_in_any_format(client, agent):
    maria = await create_contact(client, agent, phone="+5511987654321", name="Maria")
    await create_contact(client, agent, phone="+14155550123", name="John")
    for q in ("(11) 98765-4321", "+55 11 98765", "11987654321", "98765.4321", "5432"):
        assert await _names(client, agent, q=q) == ["Maria"], q
    assert await _names(client, agent, q="+1 415-555-0123") == ["John"]
    assert await _names(client, agent, q="000 000") == []
    assert await _names(client, agent, q="1198765") == ["Maria"]  # six digits or more, inside
    r = await client.patch(
        f"/v1/contacts/{maria['id']}", json={"phone": "+5521912345678"}, headers=agent
    )
    assert r.status_code == 200, r.text
    assert await _names(client, agent, q="(11) 98765-4321") == []
    assert await _names(client, agent, q="(21) 91234-5678") == ["Maria"]
    assert await _names(client, agent, q="912345") == ["Maria"]


async def test_phone_fragment_many_phones_share_pages_oldest_first(client, agent):
    """A fragment of many phones is read through the digit grams (migration 0006): all
    its contacts, oldest first, page by page, and the filters still apply."""
    names = [f"Cliente {i}" for i in range(7)]
    ids = [
        (await create_contact(client, agent, phone=f"+55119876500{i:02d}", name=name))["id"]
        for i, name in enumerate(names)
    ]
    await create_contact(client, agent, phone="+5521912345678", name="Outro")
    for q in ("+55 11 98765", "987650", "(11) 98765-00"):
        assert await _names(client, agent, q=q, limit=2) == names, q
    r = await client.post(f"/v1/contacts/{ids[3]}/block", json={"reason": "spam"}, headers=agent)
    assert r.status_code in (200, 204), r.text
    assert await _names(client, agent, q="+55 11 98765", blocked="true") == [names[3]]
    assert await _names(client, agent, q="+55 11 98765", blocked="false", limit=4) == [
        n for n in names if n != names[3]
    ]


async def test_tag_filter_follows_tagging_untagging_and_tag_deletion(client, agent, admin):
    """``tag_id`` reads the tags contact_search carries (migration 0006): they follow every
    tag change, a tag deleted included."""
    people = {
        name: (await create_contact(client, agent, phone=phone, name=name))["id"]
        for name, phone in (
            ("Ana", "+5511987650101"),
            ("Bruno", "+5511987650102"),
            ("Carla", "+5511987650103"),
        )
    }
    vip, lead = [
        (await client.post("/v1/tags", json={"name": name}, headers=admin)).json()["id"]
        for name in ("VIP", "Lead")
    ]

    async def tag(name, tag_id, method="PUT"):
        path = f"/v1/contacts/{people[name]}/tags/{tag_id}"
        r = await client.request(method, path, headers=agent)
        assert r.status_code == 204, r.text

    await tag("Ana", vip)
    await tag("Carla", vip)
    await tag("Carla", vip)  # twice is once
    await tag("Carla", lead)
    assert await _names(client, agent, tag_id=vip, limit=1) == ["Ana", "Carla"]
    assert await _names(client, agent, tag_id=lead) == ["Carla"]
    assert await _names(client, agent, q="carla", tag_id=vip) == ["Carla"]
    assert await _names(client, agent, q="ana", tag_id=lead) == []
    await tag("Ana", vip, "DELETE")
    assert await _names(client, agent, tag_id=vip) == ["Carla"]
    await tag("Ana", vip)
    assert await _names(client, agent, tag_id=vip) == ["Ana", "Carla"]
    assert (await client.delete(f"/v1/tags/{vip}", headers=admin)).status_code == 204
    assert await _names(client, agent, tag_id=vip) == []
    assert await _names(client, agent, tag_id=lead) == ["Carla"]
    everyone = (await client.get(f"/v1/contacts/{people['Carla']}", headers=agent)).json()
    assert [t["name"] for t in everyone["tags"]] == ["Lead"]


async def test_words_found_together_in_a_long_walk_page_in_creation_order(app, client, org, agent):
    """Two words in one rank, one contact in 40 of 1,200: the first 1,000 contacts hold
    25 matches, less than a page of 25 (+1), so the longer walk (migration 0006) finds it;
    the next page comes from the full query. Every match once, oldest first."""
    await _insert(
        app,
        org,
        "SELECT gen_random_uuid(), :org, '55119876' || lpad(i::text, 5, '0'),"
        " CASE WHEN i % 40 = 0 THEN 'Padaria Ávila ' || i ELSE 'Filler ' || i END,"
        " 'profile', '+55119876' || lpad(i::text, 5, '0'),"
        " CAST(:t0 AS timestamptz) + i * interval '1 minute'"
        " FROM generate_series(0, 1199) AS i",
    )
    expected = [f"Padaria Ávila {i}" for i in range(0, 1200, 40)]
    assert await _names(client, agent, q="padaria avila", limit=25) == expected
    assert await _names(client, agent, q="avila padaria", limit=7) == expected


@pytest.mark.parametrize(
    ("fragment", "way"),
    [
        ("+55 11 90", "the next 100 contacts hold a page"),
        ("+55 11 80", "the next 2,000 hold a page"),
        ("000014", "every match through the grams: one early, the rest late"),
        ("(11) 8000-01", "every match through the grams: none in the first 1,000"),
    ],
)
async def test_phone_type_ahead_pages_in_creation_order_whichever_way_it_is_read(
    app, client, org, agent, fragment, way
):
    """A six-to-nine-digit fragment (migration 0009) is read by a short walk, a longer one
    or its digit grams, by how many of the next contacts hold it: every match once,
    oldest first, page after page (each page chooses again from its cursor)."""
    phones = [f"5511{8 if i % 5 == 0 else 9}{i:08d}" for i in range(1500)]
    await _insert(
        app,
        org,
        "SELECT gen_random_uuid(), :org, p.phone, 'Cliente ' || (p.i - 1), 'profile',"
        " '+' || p.phone, CAST(:t0 AS timestamptz) + p.i * interval '1 minute'"
        " FROM unnest(CAST(:phones AS text[])) WITH ORDINALITY AS p(phone, i)",
        phones=phones,
    )
    digits = "".join(ch for ch in fragment if ch.isdigit())
    expected = [f"Cliente {i}" for i, phone in enumerate(phones) if digits in phone]
    assert len(expected) >= 100, way
    assert await _names(client, agent, q=fragment, limit=25) == expected, way


async def test_exact_words_rank_before_prefixes_before_typos_with_stable_pages(client, agent):
    # created in this order, so within a rank the order is creation order
    made = {}
    for i, name in enumerate(
        ["Jonny Lee", "John Doe", "Jon Snow", "Jonathan Park", "Jon Arbuckle", "Joan Jett"]
    ):
        made[name] = await create_contact(client, agent, phone=f"+55119876500{i:02d}", name=name)
    # "jon" is a word of the vocabulary: the exact word, then its prefixes (no typos)
    ranked = await _names(client, agent, q="jon", limit=2)
    assert ranked == ["Jon Snow", "Jon Arbuckle", "Jonny Lee", "Jonathan Park"]
    assert await _names(client, agent, q="jon", limit=200) == ranked  # same in one page
    # "jona" is no contact's word: prefixes first, then the closest typos
    assert await _names(client, agent, q="jona", limit=2) == [
        "Jonathan Park",
        "Jonny Lee",
        "Jon Snow",
        "Jon Arbuckle",
    ]
    # a typo of a longer word
    assert await _names(client, agent, q="jonathon") == ["Jonathan Park"]
    # the rank of a contact adds up over the words
    assert await _names(client, agent, q="jon s") == ["Jon Snow"]
    assert (await _names(client, agent, q="jon park"))[0] == "Jonathan Park"
    # a contact that changes between pages moves, nothing is listed twice
    r = await client.get("/v1/contacts", params={"q": "jon", "limit": 3}, headers=agent)
    first = [c["name"] for c in r.json()["items"]]
    assert first == ranked[:3]
    await client.patch(
        f"/v1/contacts/{made['Jon Snow']['id']}", json={"name": "Jon Snowy"}, headers=agent
    )
    cursor = r.json()["next_cursor"]
    r = await client.get(
        "/v1/contacts", params={"q": "jon", "limit": 10, "cursor": cursor}, headers=agent
    )
    rest = [c["name"] for c in r.json()["items"]]
    assert first + rest == ranked


async def test_search_cursors_are_checked(client, agent):
    await create_contact(client, agent, phone="+5511987650001", name="Maria")
    bad = {"q": "maria", "cursor": "garbage"}
    r = await client.get("/v1/contacts", params=bad, headers=agent)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    negative = CONTACTS.encode((-1, T0, uuid.uuid4()))
    r = await client.get("/v1/contacts", params={"q": "maria", "cursor": negative}, headers=agent)
    assert r.status_code == 422
    # a cursor of a later rank than any match: nothing more
    late = CONTACTS.encode((7, T0, uuid.uuid4()))
    r = await client.get("/v1/contacts", params={"q": "maria", "cursor": late}, headers=agent)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


async def test_edits_erasure_and_deletes_reach_search_and_vocabulary(
    app, client, agent, admin, org
):
    a = await create_contact(
        client, agent, phone="+5511987650001", name="Quintino Barros", email="qb@velho.com"
    )
    b = await create_contact(client, agent, phone="+5511987650002", name="Ursula Barros")
    assert {"quintino", "barros", "qb", "velho", "com", "ursula"} <= await _vocabulary(app, org)

    r = await client.patch(
        f"/v1/contacts/{a['id']}", json={"name": "Quirino Barros", "email": None}, headers=agent
    )
    assert r.status_code == 200
    assert await _names(client, agent, q="quirino") == ["Quirino Barros"]
    assert await _names(client, agent, q="velho") == []
    words = await _vocabulary(app, org)
    assert "quirino" in words and not {"quintino", "qb", "velho", "com"} & words
    assert "barros" in words  # still the word of both contacts

    # soft delete: out of search, words kept for a restore
    assert (await client.delete(f"/v1/contacts/{b['id']}", headers=agent)).status_code == 204
    assert await _names(client, agent, q="barros") == ["Quirino Barros"]
    assert "ursula" in await _vocabulary(app, org)
    restored = await create_contact(client, agent, phone="+5511987650002", name="Ursula Barros")
    assert restored["id"] == b["id"]
    assert await _names(client, agent, q="ursula") == ["Ursula Barros"]

    # erasure: the person's words leave the vocabulary too
    r = await client.post(f"/v1/contacts/{a['id']}/erase", headers=admin)
    assert r.status_code == 204
    assert await _names(client, agent, q="quirino") == []
    assert await _names(client, agent, q="barros") == ["Ursula Barros"]
    assert await _names(client, agent, q="98765") == ["Ursula Barros"]  # phone gone too
    words = await _vocabulary(app, org)
    assert "quirino" not in words and "barros" in words

    # a hard delete (retention, tenant removal) releases its words as well
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(text("DELETE FROM contacts WHERE id = :id"), {"id": b["id"]})
    assert not {"ursula", "barros"} & await _vocabulary(app, org)


async def test_no_other_tenants_contacts_or_words(app, client, tokens, agent, org):
    other = uuid.uuid4()
    theirs = tokens.headers(organization_id=other, role="agent")
    await create_contact(client, agent, phone="+5511987650001", name="Bartholomew Ours")
    await create_contact(client, theirs, phone="+5511987650001", name="Bartholomew Theirs")
    await create_contact(client, theirs, phone="+5511987650002", name="Ximena Theirs")
    assert await _names(client, agent, q="bartholomew") == ["Bartholomew Ours"]
    assert await _names(client, agent, q="theirs") == []
    assert await _names(client, agent, q="ximena") == []
    assert await _names(client, agent, q="ximen") == []  # not even as a prefix or typo
    assert await _names(client, agent, q="98765") == ["Bartholomew Ours"]
    assert await _names(client, theirs, q="bartolomew") == ["Bartholomew Theirs"]
    assert "ximena" not in await _vocabulary(app, org)
    args = (
        "'ximena', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 50"
    )
    async with app.state.db.transaction(organization_id=org) as s:
        # the function binds the transaction's tenant itself
        assert (await s.execute(text(f"SELECT * FROM pytake_contact_page({args})"))).all() == []
    async with app.state.db.transaction(bypass_rls=True) as s:
        # no tenant bound (even bypassing RLS): no rows at all
        assert (await s.execute(text(f"SELECT * FROM pytake_contact_page({args})"))).all() == []
    async with app.state.db.transaction(organization_id=other) as s:
        found = (await s.execute(text(f"SELECT * FROM pytake_contact_page({args})"))).all()
        assert len(found) == 1


async def test_only_the_page_function_is_callable_by_the_application(app, org):
    """The search's SECURITY DEFINER helpers are for its triggers and page function only:
    called directly, the vocabulary release could drop another organization's words."""
    from sqlalchemy.exc import DBAPIError

    other = uuid.uuid4()
    release = "SELECT pytake_contact_vocabulary_release(:org, ARRAY['ximena'], NULL)"
    async with app.state.db.transaction(organization_id=org) as s:
        # as the application's role (pytake_app), the way every request runs
        with pytest.raises(DBAPIError, match="permission denied"):
            await s.execute(text(release), {"org": other})
    async with app.state.db.transaction(organization_id=org) as s:
        granted = (
            await s.execute(
                text(
                    "SELECT p.proname, has_function_privilege(p.oid, 'EXECUTE') FROM pg_proc p"
                    " WHERE p.prosecdef AND p.proname LIKE 'pytake_contact%' ORDER BY 1"
                )
            )
        ).all()
    assert dict(granted) == {
        "pytake_contact_page": True,
        "pytake_contact_search_sql": False,
        "pytake_contact_search_sync": False,
        "pytake_contact_tags_sync": False,
        "pytake_contact_vocabulary_release": False,
    }
