"""The local infrastructure the fault suite breaks on purpose."""

import asyncpg

from pytake_common.outbox import plain_dsn
from pytake_devstack.infra import EmbeddedPostgres


async def test_a_restarted_embedded_postgres_keeps_its_address_and_its_data(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = pg.start()
    try:
        conn = await asyncpg.connect(plain_dsn(url))
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        before = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await conn.close()

        assert pg.restart() == url

        conn = await asyncpg.connect(plain_dsn(url))
        assert await conn.fetchval("SELECT v FROM kept") == 42
        assert await conn.fetchval("SELECT pg_postmaster_start_time()") > before
        await conn.close()
    finally:
        pg.stop()
