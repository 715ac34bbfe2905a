import asyncio
import uuid

import pytest
from sqlalchemy import text

from pytake_common.errors import InvalidInput
from pytake_common.idempotency import IdempotencyGuard, fingerprint


async def _create_note(db, org, user, key, body):
    async with db.transaction(organization_id=org) as s:
        guard = IdempotencyGuard(s, org, user, key, fingerprint("POST", "/notes", body))
        if (stored := await guard.claim()) is not None:
            return stored
        note_id = uuid.uuid4()
        await s.execute(
            text("INSERT INTO notes (id, organization_id, body) VALUES (:i,:o,:b)"),
            {"i": note_id, "o": org, "b": body["body"]},
        )
        await asyncio.sleep(0.2)  # widen the race window
        answer = {"id": str(note_id)}
        await guard.store(201, answer)
        return 201, answer


async def test_concurrent_retries_do_the_work_once_and_replay_the_answer(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    results = await asyncio.gather(
        *[_create_note(db, org, user, "k1", {"body": "x"}) for _ in range(4)]
    )
    assert len({r[1]["id"] for r in results}) == 1
    async with db.transaction(organization_id=org) as s:
        assert (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 1


async def test_same_key_different_body_is_refused(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    await _create_note(db, org, user, "k2", {"body": "x"})
    with pytest.raises(InvalidInput):
        await _create_note(db, org, user, "k2", {"body": "y"})


async def test_no_key_means_no_dedupe(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    a = await _create_note(db, org, user, None, {"body": "x"})
    b = await _create_note(db, org, user, None, {"body": "x"})
    assert a[1]["id"] != b[1]["id"]
