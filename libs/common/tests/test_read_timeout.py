"""API reads run with a statement_timeout; past it they answer 503, not 500.

GET and HEAD requests' transactions (the Database's) and the pooled read connections
(TenantReads) are bounded; writes, streamed exports (allow_long_reads) and anything
outside a request (consumers, workers, migrations) are not.
"""

import uuid

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text

from pytake_common.errors import StatementTimeout
from pytake_common.pgtenant import allow_long_reads, api_read_timeout
from pytake_common.rawpg import TenantReads
from pytake_common.web import create_service_app

from .plumbing import settings_for

TIMEOUT_MS = 300


def app_for(db, reads):
    settings = settings_for("127.0.0.1:1", "timed").model_copy(
        update={"api_read_statement_timeout_ms": TIMEOUT_MS}
    )
    router = APIRouter()
    org = uuid.uuid4()

    async def sleep(seconds: float) -> str:
        async with db.transaction(organization_id=org) as session:
            await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
            return str((await session.execute(text("SHOW statement_timeout"))).scalar_one())

    @router.get("/v1/sleep")
    async def read(seconds: float) -> dict[str, str]:
        return {"timeout": await sleep(seconds)}

    @router.post("/v1/sleep")
    async def write(seconds: float) -> dict[str, str]:
        return {"timeout": await sleep(seconds)}

    @router.get("/v1/export")
    async def export(seconds: float) -> dict[str, str]:
        allow_long_reads()
        return {"timeout": await sleep(seconds)}

    @router.get("/v1/pooled")
    async def pooled(seconds: float) -> dict[str, str]:
        rows = await reads.fetch(org, "SELECT pg_sleep($1::float8)::text AS s", seconds)
        return {"slept": rows[0]["s"]}

    return create_service_app(settings, title="t", routers=[router], db=db, check_broker=False)


async def test_a_read_past_its_statement_timeout_answers_503_problem(db):
    reads = TenantReads(db.url, app_role="pytake_app", max_size=1, statement_timeout_ms=TIMEOUT_MS)
    app = app_for(db, reads)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for path in ("/v1/sleep", "/v1/pooled"):
                r = await c.get(path, params={"seconds": 3})
                assert r.status_code == 503, (path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == "statement_timeout"
                assert r.headers["retry-after"] == "1"
            # a quick read afterwards: the same pools, bounded, and it succeeds
            r = await c.get("/v1/sleep", params={"seconds": 0})
            assert r.status_code == 200 and r.json()["timeout"] == f"{TIMEOUT_MS}ms"
            r = await c.get("/v1/pooled", params={"seconds": 0})
            assert r.status_code == 200
    finally:
        await reads.close()


async def test_writes_and_exports_are_not_bounded_and_the_timeout_does_not_leak(db):
    reads = TenantReads(db.url, app_role="pytake_app", max_size=1)
    app = app_for(db, reads)
    transport = httpx.ASGITransport(app=app)
    slow = TIMEOUT_MS / 1000 + 0.3
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/v1/sleep", params={"seconds": slow})
            assert r.status_code == 200 and r.json()["timeout"] == "0"
            r = await c.get("/v1/export", params={"seconds": slow})
            assert r.status_code == 200 and r.json()["timeout"] == "0"
            await c.get("/v1/sleep", params={"seconds": 0})
        # the GET's setting was transaction-local: the pooled connections do not keep it
        for _ in range(4):
            async with db.transaction() as session:
                assert (await session.execute(text("SHOW statement_timeout"))).scalar_one() == "0"
    finally:
        await reads.close()


async def test_the_read_pool_and_its_transactions_are_bounded(db):
    org = uuid.uuid4()
    reads = TenantReads(db.url, app_role="pytake_app", max_size=1, statement_timeout_ms=TIMEOUT_MS)
    try:
        with pytest.raises(StatementTimeout):
            await reads.fetch(org, "SELECT pg_sleep(3)")
        with pytest.raises(StatementTimeout):
            async with reads.transaction(org) as conn:
                await conn.execute("SELECT pg_sleep(3)")
        # the one connection is still usable and bound right
        rows = await reads.fetch(org, "SELECT current_setting('pytake.organization_id') AS o")
        assert rows[0]["o"] == str(org)
    finally:
        await reads.close()


async def test_a_database_transaction_inside_an_api_read_is_bounded(db):
    with api_read_timeout(TIMEOUT_MS):
        with pytest.raises(StatementTimeout):
            async with db.transaction(organization_id=uuid.uuid4()) as session:
                await session.execute(text("SELECT pg_sleep(3)"))
    async with db.transaction() as session:  # outside one: the server's default
        await session.execute(text("SELECT pg_sleep(0.5)"))
