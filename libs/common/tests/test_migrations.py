"""Migration helpers against a real PostgreSQL server."""

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_common.migrations import ensure_database, grant_app_role
from pytake_common.pgtenant import to_asyncpg_url
from pytake_devstack.pytest_plugin import unique_name


async def test_services_migrated_at_the_same_time_both_get_the_app_role(pg_url):
    """Roles are the server's: two services' migrations (make run starts them side by
    side; Kubernetes runs each service's job on its own) both find the role missing,
    one creates it and the other's CREATE ROLE waits for it, then must not fail."""
    role = unique_name("race_role")
    urls = [to_asyncpg_url(pg_url, database=unique_name("t_role_race")) for _ in range(2)]
    for url in urls:
        await ensure_database(url)
    first, second = (create_async_engine(url) for url in urls)
    try:
        async with first.connect() as a, second.connect() as b:
            await a.run_sync(grant_app_role, role)  # created, not committed yet
            racing = asyncio.create_task(b.run_sync(grant_app_role, role))
            await asyncio.sleep(0.5)
            assert not racing.done()  # its CREATE ROLE waits for the first transaction
            await a.commit()
            await asyncio.wait_for(racing, 10)
            await b.commit()
            granted = await b.scalar(
                text("SELECT has_table_privilege(:r, 'pg_class', 'SELECT')"), {"r": role}
            )
            assert granted is True
    finally:
        await first.dispose()
        await second.dispose()
