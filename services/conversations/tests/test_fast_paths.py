"""The hot reads' fast paths answer exactly what FastAPI's full handling answers, for
plain and unusual spellings, bad tokens and other organizations; and they are taken."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args, get_type_hints

import pytest
from fastapi.params import Depends

from pytake_common.security import Reader
from pytake_conversations.api import deps, messages, routes

from .helpers import Customer, deliver, opened, set_conversation


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
async def inbox(app, org):
    """Three conversations, one assigned and high priority, one with several messages."""
    agent = uuid.uuid4()
    first = await opened(app, org, Customer(org), "one")
    customer = Customer(org)
    second = await opened(app, org, customer, "two")
    for text in ("three", "four", "five"):
        await deliver(app, customer.says(text))
    third = await opened(app, org, Customer(org), "six")
    await set_conversation(app, org, second["id"], assignee_id=agent, priority="high")
    await set_conversation(app, org, third["id"], status="pending", unread_count=0)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    await set_conversation(app, org, first["id"], first_response_due_at=soon)
    await set_conversation(app, org, second["id"], resolution_breached_at=soon)
    return {"agent": agent, "ids": [first["id"], second["id"], third["id"]]}


def cases(inbox, org) -> list[tuple[str, dict | list]]:
    agent, (first, second, _) = str(inbox["agent"]), [str(i) for i in inbox["ids"]]
    history = f"/v1/conversations/{second}/messages"
    return [
        # plain spellings: the fast path answers
        ("/v1/conversations", {}),
        ("/v1/conversations", {"limit": "1"}),
        ("/v1/conversations", {"limit": "200"}),
        ("/v1/conversations", [("status", "open"), ("status", "pending")]),
        ("/v1/conversations", {"assignee_id": agent, "status": "open"}),
        ("/v1/conversations", {"unassigned": "true", "has_unread": "true"}),
        ("/v1/conversations", {"unassigned": "false", "priority": "high"}),
        ("/v1/conversations", {"contact_id": str(uuid.uuid4()), "number_id": str(org)}),
        ("/v1/conversations", {"department_id": agent, "unknown": "ignored"}),
        ("/v1/conversations", {"cursor": ""}),
        ("/v1/conversations", {"cursor": "not-a-cursor"}),
        ("/v1/conversations/counts", {}),
        ("/v1/conversations/counts", {"assignee_id": agent, "status": "closed"}),
        ("/v1/conversations/counts", {"has_unread": "false"}),
        ("/v1/conversations", {"sla": "at_risk"}),
        ("/v1/conversations", {"sla": "breached", "status": "open"}),
        ("/v1/conversations/counts", {"sla": "at_risk"}),
        (history, {}),
        (history, {"latest": "true", "limit": "2"}),
        (history, {"latest": "false", "include_notes": "false"}),
        (history, {"limit": "1"}),
        (history, {"before": str(uuid.uuid4())}),
        (history, {"after": str(uuid.uuid4()), "latest": "true"}),
        (history, {"cursor": "garbage"}),
        (f"/v1/conversations/{uuid.uuid4()}/messages", {}),
        (f"/v1/conversations/{first}/messages", {"latest": "true"}),
        # unusual spellings and invalid values: left to FastAPI
        ("/v1/conversations", {"limit": "0"}),
        ("/v1/conversations", {"limit": "201"}),
        ("/v1/conversations", {"limit": "050"}),
        ("/v1/conversations", {"limit": "", "status": "nope"}),
        ("/v1/conversations", [("limit", "2"), ("limit", "1")]),
        ("/v1/conversations", {"unassigned": "True", "has_unread": "1"}),
        ("/v1/conversations", {"unassigned": "maybe"}),
        ("/v1/conversations", {"assignee_id": agent.upper()}),
        ("/v1/conversations", {"assignee_id": agent.replace("-", "")}),
        ("/v1/conversations", {"assignee_id": "not-a-uuid"}),
        ("/v1/conversations", {"updated_since": "2020-01-01T00:00:00Z"}),
        ("/v1/conversations", {"updated_since": "2020-01-01T00:00:00"}),
        ("/v1/conversations/counts", {"status": "ignored-here", "priority": "low"}),
        ("/v1/conversations/counts", {"priority": "meh"}),
        ("/v1/conversations", {"sla": "late"}),
        (history, {"latest": "yes"}),
        (history, {"latest": "true", "before": str(uuid.uuid4())}),
        (history, {"limit": "-1"}),
        ("/v1/conversations", [("status", "open"), ("status", "nope")]),
        ("/v1/conversations", [("priority", "low"), ("priority", "low"), ("status", "closed")]),
        ("/v1/conversations", [("assignee_id", agent), ("assignee_id", agent)]),
        ("/v1/conversations", {"updated_since": "2020-01-01T00:00:00.5+03:00", "limit": "2"}),
        ("/v1/conversations", {"updated_since": "2020-13-01T00:00:00Z"}),
        ("/v1/conversations/counts", {"updated_since": "2999-01-01T00:00:00Z"}),
        ("/v1/conversations/counts", {"limit": "1"}),
        (history, {"include_notes": "false", "unknown": "x"}),
        (history, [("latest", "true"), ("latest", "true")]),
        (f"/v1/conversations/{second.upper()}/messages", {}),
        ("/v1/conversations/not-a-uuid/messages", {}),
    ]


async def answer(client, path, params, headers):
    r = await client.get(path, params=params, headers=headers)
    return r.status_code, r.headers.get("content-type"), r.content


@pytest.mark.parametrize("who", ["viewer", "other org", "no token", "bad token"])
async def test_fast_paths_answer_what_fastapi_answers(app, client, tokens, org, inbox, who):
    headers = {
        "viewer": tokens.headers(organization_id=org, role="viewer"),
        "other org": tokens.headers(organization_id=uuid.uuid4(), role="org_admin"),
        "no token": {},
        "bad token": {"Authorization": "Bearer not.a.token"},
    }[who]
    statuses = set()
    for path, params in cases(inbox, org):
        app.state.fast_paths = True
        fast = await answer(client, path, params, headers)
        app.state.fast_paths = False
        full = await answer(client, path, params, headers)
        assert fast == full, (path, params)
        statuses.add(fast[0])
    expected = {"viewer": {200, 404, 422}, "other org": {200, 404, 422}}.get(who, {401})
    assert statuses == expected


async def test_plain_requests_take_the_fast_path(app, client, tokens, org, inbox, monkeypatch):
    taken: list[str] = []

    def counting(endpoint):
        fast = endpoint.fast_path

        async def wrapper(request):
            response = await fast(request)
            taken.append("fast" if response is not None else "fastapi")
            return response

        monkeypatch.setattr(endpoint, "fast_path", wrapper)

    for endpoint in (routes.list_conversations, routes.conversation_counts, messages.list_messages):
        counting(endpoint)
    headers = tokens.headers(organization_id=org, role="agent")
    second = inbox["ids"][1]
    for path, params in [
        ("/v1/conversations", {"status": "open", "limit": "50"}),
        ("/v1/conversations/counts", {}),
        (f"/v1/conversations/{second}/messages", {"latest": "true", "limit": "50"}),
    ]:
        assert (await client.get(path, params=params, headers=headers)).status_code == 200
    r = await client.get("/v1/conversations", params={"limit": "abc"}, headers=headers)
    assert r.status_code == 422
    assert taken == ["fast", "fast", "fast", "fastapi"]


async def test_inbox_and_history_pages_walk_the_whole_list(app, client, tokens, org, inbox):
    headers = tokens.headers(organization_id=org, role="viewer")
    for path in ("/v1/conversations", f"/v1/conversations/{inbox['ids'][1]}/messages"):
        everything = (await client.get(path, params={"limit": "200"}, headers=headers)).json()
        walked, cursor = [], None
        while True:
            params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
            page = (await client.get(path, params=params, headers=headers)).json()
            walked += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == everything["items"] and len(walked) >= 3


async def test_dependency_overrides_turn_the_fast_paths_off(app, client, tokens, org, inbox):
    from pytake_conversations.api.deps import _window_hours

    async def one_hour() -> float:
        return 1.0

    headers = tokens.headers(organization_id=org, role="viewer")
    app.dependency_overrides[_window_hours] = one_hour
    try:
        items = (await client.get("/v1/conversations", headers=headers)).json()["items"]
    finally:
        app.dependency_overrides.clear()
    assert items
    for item in items:
        opened_at = datetime.fromisoformat(item["last_inbound_at"])
        closes_at = datetime.fromisoformat(item["service_window_expires_at"])
        assert closes_at - opened_at == timedelta(hours=1)


async def test_filters_lists_and_times_take_the_fast_path(
    app, client, tokens, org, inbox, monkeypatch
):
    taken: list[str] = []
    fast = routes.list_conversations.fast_path

    async def counting(request):
        response = await fast(request)
        taken.append("fast" if response is not None else "fastapi")
        return response

    monkeypatch.setattr(routes.list_conversations, "fast_path", counting)
    headers = tokens.headers(organization_id=org, role="agent")
    params = [
        ("status", "open"),
        ("status", "pending"),
        ("priority", "high"),
        ("updated_since", "2020-01-01T00:00:00Z"),
    ]
    r = await client.get("/v1/conversations", params=params, headers=headers)
    assert r.status_code == 200 and r.json()["items"]
    assert taken == ["fast"]


def dependencies(endpoint) -> list:
    hints = get_type_hints(endpoint, include_extras=True).values()
    return [
        extra.dependency
        for hint in hints
        for extra in get_args(hint)[1:]
        if isinstance(extra, Depends)
    ]


def test_the_readings_come_from_the_signatures():
    filters = {
        "status",
        "assignee_id",
        "department_id",
        "unassigned",
        "contact_id",
        "number_id",
        "has_unread",
        "priority",
        "updated_since",
        "sla",
    }
    assert set(routes.FILTER_PARAMS.readers) == filters
    assert routes.FILTER_PARAMS.lists == {"status", "priority"}
    assert routes.PAGE_PARAMS.defaults == {"limit": 50, "cursor": None}
    assert routes.COUNTS_PARAMS.readers == {}
    assert messages.HISTORY_PARAMS.defaults == {
        "limit": 50,
        "cursor": None,
        "before": None,
        "after": None,
        "latest": False,
        "include_notes": True,
    }
    assert set(messages.HISTORY_PARAMS.path) == {"conversation_id"}
    # the fast paths do by hand what these dependencies do: a new one needs them too
    reader = get_args(Reader)[1].dependency
    assert dependencies(routes.list_conversations) == [
        reader,
        deps._reads,
        deps._window_hours,
        deps._at_risk_window,
        routes._filters,
    ]
    assert dependencies(routes.conversation_counts) == [
        reader,
        deps._reads,
        deps._at_risk_window,
        routes._filters,
    ]
    assert dependencies(messages.list_messages) == [reader, deps._reads]
