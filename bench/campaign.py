"""Benchmark (skeleton of issue #16's bench): a 100,000-recipient campaign frozen and queued.

Starts an embedded PostgreSQL (unless PYTAKE_DATABASE_URL is set), migrates a fresh
campaigns database and seeds its replicas directly with COPY (what contacts' and
whatsapp-gateway's events would have built): ``--contacts`` contacts of one
organization, all tagged and with marketing consent except every 50th (blocked) and
every 20th (no consent), a number and an approved MARKETING template. Then, through
the campaigns app in-process (ASGI, workers off, a real token), creates a campaign to
the tag and times ``POST /v1/campaigns/{id}/start``: the audience frozen into queued
recipients in one set-based statement, the exclusions counted (target: < 60 s for
100,000). Prints the box's calibration (bench/_measure.calibrate) beside the figures.

The end-to-end send-rate part of the issue's targets (80/s on a number, agent replies
ahead of the broadcast, a kill of the service mid-campaign) runs the whole platform and
is left to the full bench.

Usage: python bench/campaign.py [--contacts 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from _measure import calibrate, infrastructure, pct
from sqlalchemy import text

import pytake_campaigns
from pytake_campaigns.app import create_app
from pytake_campaigns.config import Settings
from pytake_common.migrations import upgrade
from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.tokens import TokenFactory

MIGRATIONS = Path(pytake_campaigns.__file__).parent / "migrations"


async def seed(dsn: str, org: uuid.UUID, number: uuid.UUID, tag: uuid.UUID, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO number_replicas (id, organization_id, waba_id, status,"
            " messaging_limit_tier, throughput_per_second) VALUES ($1, $2, 'W', 'connected',"
            " 'TIER_UNLIMITED', 80)",
            number,
            org,
        )
        await conn.execute(
            "INSERT INTO template_replicas (id, organization_id, waba_id, name, language,"
            " category, status, components) VALUES ($1, $2, 'W', 'sale', 'en_US', 'MARKETING',"
            ' \'APPROVED\', \'[{"type": "BODY", "text": "Hi {{1}}"}]\')',
            uuid.uuid4(),
            org,
        )
        await conn.execute(
            "INSERT INTO tag_replicas (id, organization_id, name) VALUES ($1, $2, 'all')", tag, org
        )
        ids = [uuid.uuid4() for _ in range(n)]
        await conn.copy_records_to_table(
            "contact_replicas",
            columns=["id", "organization_id", "wa_id", "name", "marketing_opt_in", "blocked"],
            records=[
                (cid, org, f"55{i:011d}", f"Contact {i}", i % 20 != 0, i % 50 == 0)
                for i, cid in enumerate(ids)
            ],
        )
        await conn.copy_records_to_table(
            "contact_tag_replicas",
            columns=["organization_id", "contact_id", "tag_id"],
            records=[(org, cid, tag) for cid in ids],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run(contacts: int) -> None:
    speed = calibrate()
    with infrastructure("campaign", broker=False) as infra:
        url = to_asyncpg_url(infra.pg_url, database=f"bench_campaigns_{uuid.uuid4().hex[:8]}")
        await asyncio.to_thread(upgrade, MIGRATIONS, url, "pytake_app")
        org, number, tag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        started = time.perf_counter()
        await seed(asyncpg_dsn(url), org, number, tag, contacts)
        seeded = time.perf_counter() - started
        settings = Settings(
            own_database_url=url, run_workers=False, env="test", state_dir=infra.state
        )
        app = create_app(settings)
        tokens = TokenFactory()
        tokens.install(app)
        headers = tokens.headers(organization_id=org)
        body = {
            "name": "bench",
            "number_id": str(number),
            "template": {"name": "sale", "language": "en_US", "parameters": ["{{contact.name}}"]},
            "audience": {"tags_any": [str(tag)]},
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://campaigns") as client:
            r = await client.post("/v1/campaigns", json=body, headers=headers)
            r.raise_for_status()
            campaign = r.json()["id"]
            t0 = time.perf_counter()
            r = await client.post(f"/v1/campaigns/{campaign}/start", headers=headers, timeout=300)
            frozen = time.perf_counter() - t0
            r.raise_for_status()
            answer = r.json()
        # the dispatcher's cost per tick with the whole audience queued (what every
        # running campaign pays ``1 / dispatch tick`` times a second)
        ticks = []
        for _ in range(20):
            async with app.state.db.transaction(bypass_rls=True) as session:
                await session.execute(
                    text("UPDATE campaigns SET credit_at = now() - interval '1 s'")
                )
            t0 = time.perf_counter()
            released = await app.state.dispatcher.tick()
            ticks.append((time.perf_counter() - t0) * 1000)
        await app.state.db.dispose()
    print(f"calibration: {speed:.1f} ms (lower is faster; shared 2-core box, figures are noisy)")
    print(f"seeded {contacts:,} contact replicas (COPY) in {seeded:.1f} s")
    print(
        f"start (freeze + queue): {frozen:.2f} s for {answer['recipients_total']:,} recipients,"
        f" exclusions {answer['exclusions']} (target < 60 s for 100,000)"
    )
    print(
        f"dispatcher tick with the audience queued: p50 {pct(ticks, 50):.1f} ms,"
        f" max {max(ticks):.1f} ms (the last released {released}: the in-flight window is full)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.contacts))


if __name__ == "__main__":
    sys.exit(main())
