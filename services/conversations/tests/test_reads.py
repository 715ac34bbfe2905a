"""The light read path of the inbox and the history: same answers as the models, same
tenant isolation, and counts kept by triggers that agree with a count of the rows."""

import asyncio
import uuid

import pytest
from sqlalchemy import delete

from pytake_common.rawpg import TenantReads
from pytake_conversations.tables import conversations
from pytake_conversations.views import Conversation, Message

from .helpers import Customer, deliver, message_rows, opened, set_conversation

CURRENT_ORG = "SELECT current_setting('pytake.organization_id')"
CURRENT_ORG_ROW = "SELECT current_setting('pytake.organization_id') AS o"


@pytest.fixture
def org():
    return uuid.uuid4()


async def test_inbox_items_serialise_exactly_as_the_model(app, client, tokens, org):
    customer = Customer(org)
    conv = await opened(app, org, customer, "one")
    await deliver(app, customer.says("two"))
    await set_conversation(app, org, conv["id"], priority="high")
    headers = tokens.headers(organization_id=org, role="viewer")
    listed = (await client.get("/v1/conversations", headers=headers)).json()["items"]
    single = (await client.get(f"/v1/conversations/{conv['id']}", headers=headers)).json()
    assert listed == [single]
    assert Conversation.model_validate(listed[0]).model_dump(mode="json") == single
    history = (await client.get(f"/v1/conversations/{conv['id']}/messages", headers=headers)).json()
    rows = sorted(await message_rows(app, org), key=lambda m: (m["created_at"], m["id"]))
    assert history["items"] == [Message.of(r).model_dump(mode="json") for r in rows]
    assert (history["next_cursor"], history["has_more"]) == (None, False)


async def test_history_and_inbox_of_another_organization_answer_404_or_nothing(
    app, client, tokens, org
):
    conv = await opened(app, org)
    intruder = tokens.headers(organization_id=uuid.uuid4(), role="org_admin")
    r = await client.get(f"/v1/conversations/{conv['id']}/messages", headers=intruder)
    assert r.status_code == 404
    assert (await client.get("/v1/conversations", headers=intruder)).json()["items"] == []
    # the read path is bound by RLS too, not only by the WHERE clause
    rows = await app.state.reads.fetch(uuid.uuid4(), "SELECT id FROM conversations")
    assert rows == []
    mine = await app.state.reads.fetch(org, "SELECT organization_id FROM conversations")
    assert {r["organization_id"] for r in mine} == {org}
    role = await app.state.reads.fetch(org, "SELECT current_user AS u")
    assert role[0]["u"] == app.state.settings.db_app_role


async def test_reads_are_read_only_and_leave_no_transaction_behind(app, org):
    reads = app.state.reads
    with pytest.raises(Exception, match="read-only"):
        await reads.fetch(org, "DELETE FROM conversations")
    with pytest.raises(Exception, match="read-only"):
        async with reads.transaction(org) as conn:
            await conn.execute("DELETE FROM conversations")
    with pytest.raises(Exception, match="division by zero"):
        await reads.fetch(org, "SELECT 1 / 0")
    setting = await reads.fetch(org, "SELECT current_setting('pytake.organization_id') AS o")
    assert setting[0]["o"] == str(org)
    # the API read timeout of the service's settings (5000 ms by default) is on every read
    timeout = app.state.settings.api_read_statement_timeout_ms
    shown = "SELECT current_setting('statement_timeout')::interval = $1 * interval '1 ms'"
    assert timeout and (await reads.fetch(org, shown, timeout))[0][0] is True
    pool = await reads.pool()
    async with pool.acquire() as conn:  # between reads: no transaction, still read-only
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SHOW transaction_read_only") == "on"
        assert await conn.fetchval("SELECT current_setting('pytake.bypass_rls', true)") in (
            None,
            "",
            "off",
        )


async def test_a_connection_rebinds_for_each_organization_and_a_transaction_overrides(
    settings, org
):
    """One pooled connection serving organizations in turn never answers for the
    previous one, whether the organization changes or not."""
    reads = TenantReads(settings.service_database_url(), app_role=settings.db_app_role, max_size=1)
    other = uuid.uuid4()
    try:
        for who in (org, org, other, org, other, other):
            async with reads.connection(who) as conn:
                assert await conn.fetchval(CURRENT_ORG) == str(who)
                assert conn.bound_organization() == str(who)
        async with reads.transaction(org) as conn:  # transaction-local wins...
            assert await conn.fetchval(CURRENT_ORG) == str(org)
        async with reads.connection(other) as conn:  # ...and ends with the transaction
            assert await conn.fetchval(CURRENT_ORG) == str(other)
    finally:
        await reads.close()


async def test_a_bind_cut_off_half_way_is_redone(settings, org):
    reads = TenantReads(settings.service_database_url(), app_role=settings.db_app_role, max_size=1)
    other = uuid.uuid4()
    try:
        assert (await reads.fetch(org, CURRENT_ORG_ROW))[0]["o"] == str(org)
        with pytest.raises(RuntimeError):
            async with reads.connection(other) as conn:
                raise RuntimeError("boom")
        pool = await reads.pool()
        async with pool.acquire() as conn:
            assert conn.bound_organization() is None  # forgotten: not trusted any more
            # as if the server had applied a bind the client never saw confirmed
            await conn.fetchval(
                "SELECT set_config('pytake.organization_id', $1, false)", str(other)
            )
        assert (await reads.fetch(org, CURRENT_ORG_ROW))[0]["o"] == str(org)
    finally:
        await reads.close()


async def test_counts_follow_inserts_status_changes_and_deletes(app, client, tokens, org):
    headers = tokens.headers(organization_id=org, role="viewer")
    convs = [await opened(app, org) for _ in range(5)]
    await set_conversation(app, org, convs[0]["id"], status="pending")
    await set_conversation(app, org, convs[1]["id"], status="resolved")
    await set_conversation(app, org, convs[1]["id"], status="resolved")  # no change
    await set_conversation(app, org, convs[2]["id"], status="closed")
    await set_conversation(app, org, convs[3]["id"], priority="urgent")  # not a status change
    expected = {"open": 2, "pending": 1, "resolved": 1, "closed": 1, "total": 5}
    assert (await client.get("/v1/conversations/counts", headers=headers)).json() == expected
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(delete(conversations).where(conversations.c.id == convs[4]["id"]))
    expected |= {"open": 1, "total": 4}
    assert (await client.get("/v1/conversations/counts", headers=headers)).json() == expected
    # with a filter the rows are counted: both agree
    filtered = await client.get(
        "/v1/conversations/counts", params={"unassigned": "true"}, headers=headers
    )
    listed = await client.get("/v1/conversations", params={"unassigned": "true"}, headers=headers)
    assert filtered.json()["total"] == len(listed.json()["items"])


async def test_a_cancelled_read_leaves_the_pool_usable(app, org):

    reads = app.state.reads
    task = asyncio.create_task(reads.fetch(org, "SELECT pg_sleep(10)"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(3):
        rows = await reads.fetch(org, "SELECT current_setting('pytake.organization_id') AS o")
        assert rows[0]["o"] == str(org)


async def test_reads_are_served_in_the_order_they_ask(settings, org):
    """Under load a released connection goes to the read that has waited longest, never
    to one that asked later (asyncpg's pool alone lets a newcomer take it, and the woken
    waiter queues again at the back)."""
    reads = TenantReads(settings.service_database_url(), app_role=settings.db_app_role, max_size=2)
    asked: list[int] = []
    served: list[int] = []

    async def client() -> None:
        for _ in range(40):
            ticket = len(asked)
            asked.append(ticket)
            async with reads.connection(org) as conn:
                served.append(ticket)
                await conn.fetchval("SELECT 1")

    try:
        await reads.fetch(org, "SELECT 1")  # the pool is open: tickets meet the queue in order
        await asyncio.gather(*(client() for _ in range(12)))
        overtaken = sum(1 for i, ticket in enumerate(served) if ticket > i + 2)
        assert sorted(served) == list(range(len(asked)))
        assert overtaken == 0, f"{overtaken} reads went ahead of earlier ones"
    finally:
        await reads.close()
