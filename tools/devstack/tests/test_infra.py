"""The local infrastructure the fault suite breaks on purpose."""

from pathlib import Path

import asyncpg

from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.infra import MAX_CONNECTIONS, NOT_DURABLE, EmbeddedPostgres, free_port


async def test_a_restarted_embedded_postgres_keeps_its_address_and_its_data(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = pg.start()
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        before = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await conn.close()

        assert pg.restart() == url

        conn = await asyncpg.connect(asyncpg_dsn(url))
        assert await conn.fetchval("SELECT v FROM kept") == 42
        assert await conn.fetchval("SELECT pg_postmaster_start_time()") > before
        await conn.close()
    finally:
        pg.stop()


async def test_the_suites_throwaway_server_skips_disk_flushes_and_stops_at_once(tmp_path):
    """The test suite's server: no fsync and no full-page writes
    (nothing need survive a crash of the box), and its stop skips the checkpoint. The
    default (make run, the benchmarks) keeps them."""
    throwaway = EmbeddedPostgres(tmp_path / "throwaway", durable=False)
    conn = await asyncpg.connect(asyncpg_dsn(throwaway.start()))
    try:
        shown = {n: await conn.fetchval(f"SHOW {n}") for n in NOT_DURABLE}
        assert shown == NOT_DURABLE
        assert await conn.fetchval("SHOW max_connections") == str(MAX_CONNECTIONS)
    finally:
        await conn.close()
        throwaway.stop(discard=True)
    assert not (throwaway.pgdata / "postmaster.pid").exists()
    with (throwaway.pgdata / "global" / "pg_control").open("rb"):
        pass  # stopped, not started: its data directory is whole
    kept = EmbeddedPostgres(tmp_path / "kept")
    conn = await asyncpg.connect(asyncpg_dsn(kept.start()))
    try:
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SHOW full_page_writes") == "on"
    finally:
        await conn.close()
        kept.stop()


def test_free_ports_are_below_the_ephemeral_range_so_no_client_connection_takes_them():
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(1024 < p < floor for p in ports)
    assert len(set(ports)) > 40  # spread out: two stacks starting together rarely collide
