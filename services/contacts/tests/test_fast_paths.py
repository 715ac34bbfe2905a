"""The list's fast path answers exactly what FastAPI's full handling answers, for plain
and unusual spellings, every filter, real cursors, bad, revoked and other organizations'
tokens; it is taken for plain requests; and it reads parameters only as FastAPI would."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args, get_type_hints

import jwt
import pytest
from fastapi.params import Depends
from sqlalchemy import text

from pytake_common.event_types import AUTH_SESSION_REVOKED_V1
from pytake_common.security import Reader
from pytake_contacts.api import contacts, deps

from .helpers import event, pages

LIST = "/v1/contacts"


@pytest.fixture
async def book(app, client, org, agent, admin, tokens):
    """Five contacts: tagged, assigned, blocked, opted in, with known times; and a tag of
    another organization."""
    people = []
    for i, name in enumerate(["Maria Silva", "Mário Souza", "Ana Maria", "José", "Carla"]):
        body = {"phone": f"+55119876500{i:02d}", "name": name, "email": f"p{i}@example.com"}
        r = await client.post(LIST, json=body, headers=agent)
        assert r.status_code == 201, r.text
        people.append(r.json()["id"])
    vip = (await client.post("/v1/tags", json={"name": "VIP"}, headers=admin)).json()["id"]
    for who in people[:2]:
        assert (await client.put(f"{LIST}/{who}/tags/{vip}", headers=agent)).status_code == 204
    r = await client.post(f"{LIST}/{people[1]}/block", json={"reason": "spam"}, headers=agent)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{LIST}/{people[2]}/consent",
        json={"marketing_opt_in": True, "source": "form"},
        headers=agent,
    )
    assert r.status_code == 200, r.text
    owner = uuid.uuid4()
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            text("UPDATE contacts SET assignee_id = :owner WHERE id = :id"),
            {"owner": owner, "id": people[3]},
        )
        for i, who in enumerate(people):
            await s.execute(
                text(
                    "UPDATE contacts SET created_at = :at, last_interaction_at = :seen"
                    " WHERE id = :id"
                ),
                {
                    "at": start + timedelta(days=i),
                    "seen": start + timedelta(days=10 + i),
                    "id": who,
                },
            )
    other_org = tokens.headers(organization_id=uuid.uuid4(), role="org_admin")
    foreign = (await client.post("/v1/tags", json={"name": "VIP"}, headers=other_org)).json()
    page = (await client.get(LIST, params={"limit": "2"}, headers=agent)).json()
    search = (await client.get(LIST, params={"q": "maria", "limit": "1"}, headers=agent)).json()
    assert page["next_cursor"] and search["next_cursor"]
    return {
        "vip": vip,
        "foreign_tag": foreign["id"],
        "owner": str(owner),
        "cursor": page["next_cursor"],
        "search_cursor": search["next_cursor"],
    }


def cases(book) -> list[tuple[str, dict | list | None, bool]]:
    """(path, query, whether the fast path answers it)."""
    vip, owner, cursor = book["vip"], book["owner"], book["cursor"]
    every_filter = {
        "q": "maria",
        "tag_id": vip,
        "assignee_id": owner,
        "unassigned": "false",
        "blocked": "false",
        "opted_in": "false",
        "created_from": "2026-01-01T00:00:00Z",
        "created_to": "2026-02-01T00:00:00+00:00",
        "last_interaction_from": "2026-01-01T00:00:00.5-03:00",
        "last_interaction_to": "2026-03-01T00:00:00.123456Z",
    }
    plain = [
        (LIST, {}),
        (LIST, {"limit": "1"}),
        (LIST, {"limit": "2", "cursor": cursor}),
        (LIST, {"limit": "200"}),
        (LIST, {"limit": "3", "cursor": cursor, "opted_in": "false"}),
        (LIST, {"q": "maria"}),
        (LIST, {"q": "maria", "limit": "1", "cursor": book["search_cursor"]}),
        (LIST, {"q": "maria", "cursor": cursor}),  # a plain cursor counts as rank 0
        (LIST, {"q": "MÁRIO"}),
        (LIST, {"q": "+55 11 98765"}),
        (LIST, {"q": "p3@example"}),
        (LIST, {"q": ""}),
        (LIST, {"q": "   "}),
        (LIST, {"q": "x" * 200}),
        (LIST, {"tag_id": vip}),
        (LIST, {"tag_id": vip, "limit": "1"}),
        (LIST, {"tag_id": book["foreign_tag"]}),
        (LIST, {"tag_id": str(uuid.uuid4())}),
        (LIST, {"assignee_id": owner}),
        (LIST, {"unassigned": "true"}),
        (LIST, {"unassigned": "false"}),
        (LIST, {"blocked": "true"}),
        (LIST, {"blocked": "false", "limit": "2"}),
        (LIST, {"opted_in": "true"}),
        (LIST, {"opted_in": "false"}),
        (LIST, {"created_from": "2026-01-02T12:00:00Z"}),
        (LIST, {"created_to": "2026-01-03T09:00:00-03:00"}),
        (LIST, {"created_from": "2026-01-02T00:00:00Z", "created_to": "2026-01-04T00:00:00Z"}),
        (LIST, {"last_interaction_from": "2026-01-13T12:00:00.000001+00:00"}),
        (LIST, {"last_interaction_to": "2026-01-12T12:00:00Z", "q": "maria"}),
        (LIST, {"q": "maria", "tag_id": vip, "opted_in": "false", "blocked": "true"}),
        (LIST, every_filter),
        (LIST, every_filter | {"assignee_id": str(uuid.uuid4()), "unassigned": "true"}),
        (LIST, {"cursor": ""}),
        (LIST, {"cursor": "not-a-cursor"}),
        (LIST, {"q": "maria", "cursor": "bm90IGEgY3Vyc29y"}),
        (LIST + "?q", None),
        (LIST + "?created_from=2026-01-02T00:00:00%2B00:00&blocked=false", None),
    ]
    # unusual spellings, invalid values, repeats, unknowns: left to FastAPI
    unusual = [
        (LIST, {"limit": "0"}),
        (LIST, {"limit": "201"}),
        (LIST, {"limit": "050"}),
        (LIST, {"limit": "-1"}),
        (LIST, {"limit": ""}),
        (LIST, {"limit": " 5"}),
        (LIST, {"limit": "abc"}),
        (LIST, [("limit", "2"), ("limit", "1")]),
        (LIST, [("q", "maria"), ("q", "ana")]),
        (LIST, [("tag_id", vip), ("tag_id", book["foreign_tag"])]),
        (LIST, [("cursor", cursor), ("cursor", cursor)]),
        (LIST, {"unknown": "ignored"}),
        (LIST, {"q": "maria", "Limit": "1"}),
        (LIST, {"q": "x" * 201}),
        (LIST, {"blocked": "True"}),
        (LIST, {"blocked": "1"}),
        (LIST, {"opted_in": "yes"}),
        (LIST, {"opted_in": "on"}),
        (LIST, {"unassigned": "no"}),
        (LIST, {"unassigned": "0"}),
        (LIST, {"blocked": "maybe"}),
        (LIST, {"blocked": ""}),
        (LIST, {"tag_id": vip.upper()}),
        (LIST, {"tag_id": vip.replace("-", "")}),
        (LIST, {"tag_id": "{" + vip + "}"}),
        (LIST, {"assignee_id": "not-a-uuid"}),
        (LIST, {"assignee_id": ""}),
        (LIST, {"created_from": "2026-01-02T00:00:00"}),  # no offset
        (LIST, {"created_from": "2026-01-02"}),
        (LIST, {"created_from": "1767312000"}),
        (LIST, {"created_from": "2026-01-02 00:00:00Z"}),
        (LIST, {"created_from": "2026-01-02T00:00Z"}),
        (LIST, {"created_from": "2026-01-02T00:00:00+0000"}),
        (LIST, {"created_to": "2026-13-02T00:00:00Z"}),
        (LIST, {"created_to": "2026-01-02T24:00:00Z"}),
        (LIST, {"last_interaction_from": "2026-01-02T00:00:00.1234567Z"}),
        (LIST, {"last_interaction_to": "yesterday"}),
        (LIST + "?created_from=2026-01-02T00:00:00+00:00", None),  # "+" is a space
        (LIST + "?blocked", None),
    ]
    return [(*case, True) for case in plain] + [(*case, False) for case in unusual]


async def answer(client, path, params, headers):
    r = await client.get(path, params=params, headers=headers)
    return r.status_code, r.headers.get("content-type"), r.content


def revoked(tokens, app, org) -> dict[str, str]:
    token = tokens.mint(organization_id=org, role="agent")
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    app.state.revocations.apply(event(org, AUTH_SESSION_REVOKED_V1, {"session_id": sid}))
    return {"Authorization": f"Bearer {token}"}


def suspended(tokens, app) -> dict[str, str]:
    org = uuid.uuid4()
    state = {"organization_id": str(org), "reason": "unpaid", "changed_by": None}
    app.state.organizations.apply(event(org, "pytake.tenants.organization.suspended.v1", state))
    return tokens.headers(organization_id=org, role="org_admin")


WHO = ["agent", "viewer", "other org", "no token", "bad token", "revoked", "suspended"]


@pytest.mark.parametrize("who", WHO)
async def test_fast_path_answers_what_fastapi_answers(
    app, client, tokens, org, book, monkeypatch, who
):
    headers = {
        "agent": lambda: tokens.headers(organization_id=org, role="agent"),
        "viewer": lambda: tokens.headers(organization_id=org, role="viewer"),
        "other org": lambda: tokens.headers(organization_id=uuid.uuid4(), role="org_admin"),
        "no token": dict,
        "bad token": lambda: {"Authorization": "Bearer not.a.token"},
        "revoked": lambda: revoked(tokens, app, org),
        "suspended": lambda: suspended(tokens, app),
    }[who]()
    taken = taking(monkeypatch)
    statuses = set()
    found = 0
    for path, params, plain in cases(book):
        app.state.fast_paths = True
        fast = await answer(client, path, params, headers)
        assert taken.pop() == ("fast" if plain else "fastapi"), (path, params)
        app.state.fast_paths = False
        full = await answer(client, path, params, headers)
        assert fast == full, (path, params)
        statuses.add(fast[0])
        found += fast[2].count(b'"wa_id"')  # once a contact
    expected = {"agent": {200, 422}, "viewer": {200, 422}, "other org": {200, 422}}
    assert statuses == expected.get(who, {403} if who == "suspended" else {401})
    if who in ("agent", "viewer"):
        assert found > 100  # the cases do list contacts, not only empty pages


def taking(monkeypatch) -> list[str]:
    """Which way each request to the list goes (fast: answered or refused by the fast path)."""
    taken: list[str] = []
    fast = contacts.list_contacts.fast_path

    async def counting(request):
        try:
            response = await fast(request)
        except Exception:
            taken.append("fast")
            raise
        taken.append("fast" if response is not None else "fastapi")
        return response

    monkeypatch.setattr(contacts.list_contacts, "fast_path", counting)
    return taken


async def test_plain_requests_take_the_fast_path(client, agent, book, monkeypatch):
    taken = taking(monkeypatch)
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    for params in [  # the kinds of bench/contacts_search.py
        {"q": "maria"},
        {"q": "(11) 98765-0001"},
        {"q": "p1@exa"},
        {"tag_id": book["vip"]},
        {"blocked": "true"},
        {"last_interaction_from": since, "opted_in": "true"},
        {"q": "maria", "opted_in": "true", "limit": "1", "cursor": book["search_cursor"]},
    ]:
        assert (await client.get(LIST, params=params, headers=agent)).status_code == 200
    r = await client.get(LIST, params={"blocked": "yes"}, headers=agent)
    assert r.status_code == 200
    assert taken == ["fast"] * 7 + ["fastapi"]


@pytest.mark.parametrize(("query", "count"), [({}, 5), ({"q": "maria"}, 2)])
async def test_a_fast_walk_through_the_pages_lists_everything_once(
    client, agent, book, query, count
):
    everything = (await client.get(LIST, params=query, headers=agent)).json()["items"]
    walked = [c for page in await pages(client, LIST, agent, **query, limit="1") for c in page]
    assert walked == everything and len(walked) == count


def test_the_readings_come_from_the_signatures():
    assert set(contacts.FILTER_PARAMS.readers) == {
        "q",
        "tag_id",
        "assignee_id",
        "unassigned",
        "blocked",
        "opted_in",
        "created_from",
        "created_to",
        "last_interaction_from",
        "last_interaction_to",
    }
    assert contacts.PAGE_PARAMS.defaults == {"limit": 50, "cursor": None}
    # the fast path does by hand what these dependencies do: a new one needs it there too
    hints = get_type_hints(contacts.list_contacts, include_extras=True).values()
    dependencies = [
        extra.dependency
        for hint in hints
        for extra in get_args(hint)[1:]
        if isinstance(extra, Depends)
    ]
    assert dependencies == [get_args(Reader)[1].dependency, deps._reads, deps.contact_filter]
