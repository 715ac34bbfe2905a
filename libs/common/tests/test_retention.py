"""The retention worker deletes only expired bookkeeping rows, in batches, one replica at a time."""

import asyncio
import uuid

from sqlalchemy import text

from pytake_common.retention import RetentionWorker
from pytake_common.settings import ServiceSettings


def _settings(**overrides: float) -> ServiceSettings:
    return ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        service_name="common",
        processed_events_retention_s=overrides.get("events", 3600.0),
        idempotency_key_retention_s=overrides.get("keys", 60.0),
    )


async def _seed(db, *, old: int, fresh: int) -> str:
    group = f"g-{uuid.uuid4()}"
    org = uuid.uuid4()
    async with db.transaction(bypass_rls=True) as s:
        for age, n in ((7200.0, old), (1.0, fresh)):
            await s.execute(
                text(
                    "INSERT INTO processed_events"
                    " (consumer_group, event_id, event_type, processed_at)"
                    " SELECT :g, gen_random_uuid(), 't',"
                    " now() - make_interval(secs => :age)"
                    " FROM generate_series(1, :n)"
                ),
                {"g": group, "age": age, "n": n},
            )
            await s.execute(
                text(
                    "INSERT INTO idempotency_keys"
                    " (organization_id, principal_id, key, fingerprint, status_code, created_at)"
                    " SELECT :o, gen_random_uuid(), 'k', 'f', 201,"
                    " now() - make_interval(secs => :age)"
                    " FROM generate_series(1, :n)"
                ),
                {"o": org, "age": age, "n": n},
            )
    return group


async def _count(db, sql: str, **params) -> int:
    async with db.transaction(bypass_rls=True) as s:
        return int((await s.execute(text(sql), params)).scalar_one())


async def test_expired_rows_go_in_batches_and_fresh_ones_stay(db):
    async with db.transaction(bypass_rls=True) as s:
        await s.execute(text("DELETE FROM processed_events"))
        await s.execute(text("DELETE FROM idempotency_keys"))
    group = await _seed(db, old=250, fresh=30)
    worker = RetentionWorker(db, _settings(), batch_size=100)

    counts = await worker.prune()

    assert counts == {"processed_events": 250, "idempotency_keys": 250}
    assert (
        await _count(db, "SELECT count(*) FROM processed_events WHERE consumer_group = :g", g=group)
        == 30
    )
    assert await _count(db, "SELECT count(*) FROM idempotency_keys") == 30
    assert await worker.prune() == {"processed_events": 0, "idempotency_keys": 0}


async def test_one_replica_prunes_a_table_at_a_time(db):
    await _seed(db, old=50, fresh=0)
    worker = RetentionWorker(db, _settings(), batch_size=10)
    # Another replica holds the table's lock: this pass leaves it alone.
    async with db.transaction(bypass_rls=True) as other:
        await other.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('pytake.retention:processed_events'))")
        )
        counts = await worker.prune()
    assert counts["processed_events"] == 0
    assert counts["idempotency_keys"] >= 50
    assert (await worker.prune())["processed_events"] >= 50


async def test_worker_stops_promptly(db):
    worker = RetentionWorker(db, _settings())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
