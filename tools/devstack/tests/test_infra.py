"""The local infrastructure the fault suite breaks on purpose."""

from pathlib import Path

import asyncpg

from pytake_common.outbox import plain_dsn
from pytake_devstack.infra import EmbeddedPostgres, free_port


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


def test_free_ports_are_below_the_ephemeral_range_so_no_client_connection_takes_them():
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(1024 < p < floor for p in ports)
    assert len(set(ports)) > 40  # spread out: two stacks starting together rarely collide
