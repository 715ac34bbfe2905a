"""The hot reads' fast paths answer exactly what FastAPI's full handling answers, for
plain and unusual spellings, bad tokens and other organizations; and they are taken."""

import uuid
from datetime import datetime, timedelta

import pytest

from pytake_conversations.api import messages, routes

from .support import Customer, deliver, opened, set_conversation


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
        (history, {"latest": "yes"}),
        (history, {"latest": "true", "before": str(uuid.uuid4())}),
        (history, {"limit": "-1"}),
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
