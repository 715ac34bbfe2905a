"""idempotent(): the one claim → replay → store sequence every creating POST uses."""

import asyncio
import json
import uuid

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, text

from pytake_common.errors import Conflict, InvalidInput
from pytake_common.idempotency import Answer, IdempotencyGuard, fingerprint, idempotent
from pytake_common.mechanics import idempotency_keys


class Note(BaseModel):
    id: uuid.UUID
    body: str


async def _add_note(session, org, body: str, *, fail=False, wrote=None, pause=0.0) -> Note:
    note_id = uuid.uuid4()
    await session.execute(
        text("INSERT INTO notes (id, organization_id, body) VALUES (:i,:o,:b)"),
        {"i": note_id, "o": org, "b": body},
    )
    if wrote is not None:
        wrote.set()
    await asyncio.sleep(pause)  # keep the claim (and the write) uncommitted a while
    if fail:
        raise Conflict("the work failed after writing")
    return Note(id=note_id, body=body)


async def _post(db, org, user, key, body, *, status=201, box=None, **work) -> Answer:
    async with db.transaction(organization_id=org) as s:
        guard = IdempotencyGuard(
            s, org, user, key, fingerprint("POST", "/notes", {"body": body}), box=box
        )
        return await idempotent(guard, status, lambda: _add_note(s, org, body, **work))


async def _counts(db, org) -> tuple[int, int]:
    async with db.transaction(organization_id=org) as s:
        notes = (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one()
        keys = await s.scalar(select(func.count()).where(idempotency_keys.c.organization_id == org))
    return notes, keys


async def test_idempotent_replays_the_first_answer_with_its_status(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    first = await _post(db, org, user, "k", "x", status=202)
    again = await _post(db, org, user, "k", "x", status=202)
    assert first.replayed is False and again.replayed is True
    assert (again.status, again.body) == (first.status, first.body) == (202, first.body)
    assert first.body == {"id": first.body["id"], "body": "x"}  # the model, dumped as JSON
    response = again.response({"Location": f"/notes/{again.body['id']}"})
    assert response.status_code == 202
    assert response.headers["location"] == f"/notes/{first.body['id']}"
    assert json.loads(response.body) == first.body
    assert await _counts(db, org) == (1, 1)


async def test_idempotent_refuses_the_key_with_another_body(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    await _post(db, org, user, "k", "x")
    with pytest.raises(InvalidInput) as refused:
        await _post(db, org, user, "k", "y")
    assert refused.value.status == 422
    assert await _counts(db, org) == (1, 1)


async def test_idempotent_scopes_keys_to_the_principal(db):
    org = uuid.uuid4()
    a = await _post(db, org, uuid.uuid4(), "k", "x")
    b = await _post(db, org, uuid.uuid4(), "k", "x")
    assert a.body["id"] != b.body["id"] and not b.replayed


async def test_a_failed_attempt_stores_nothing_and_the_retry_runs(db):
    """Claim, work and answer commit together: a failure after the work wrote leaves
    neither the work nor the claim, so the retry with the same key does the work."""
    org, user = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(Conflict):
        await _post(db, org, user, "k", "x", fail=True)
    assert await _counts(db, org) == (0, 0)
    retry = await _post(db, org, user, "k", "x")
    assert retry.replayed is False
    assert await _counts(db, org) == (1, 1)


async def test_a_crash_between_the_work_and_the_stored_answer_leaves_nothing(db):
    """The task dies (cancelled) after the business write, before the answer is stored."""
    org, user = uuid.uuid4(), uuid.uuid4()
    wrote = asyncio.Event()
    task = asyncio.create_task(_post(db, org, user, "k", "x", wrote=wrote, pause=30))
    await wrote.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _counts(db, org) == (0, 0)
    assert (await _post(db, org, user, "k", "x")).replayed is False


async def test_concurrent_duplicates_do_the_work_once(db):
    """A duplicate waits on the first call's claim, then replays what it committed."""
    org, user = uuid.uuid4(), uuid.uuid4()
    answers = await asyncio.gather(*[_post(db, org, user, "k", "x", pause=0.2) for _ in range(4)])
    assert len({a.body["id"] for a in answers}) == 1
    assert sorted(a.replayed for a in answers) == [False, True, True, True]
    assert await _counts(db, org) == (1, 1)


async def test_a_duplicate_of_a_failing_call_does_the_work_itself(db):
    """The duplicate waits on the first call's claim; the first fails and rolls back, so
    the duplicate owns the key and does the work (nothing was stored to replay)."""
    org, user = uuid.uuid4(), uuid.uuid4()
    wrote = asyncio.Event()
    first = asyncio.create_task(_post(db, org, user, "k", "x", fail=True, wrote=wrote, pause=0.3))
    await wrote.wait()
    duplicate = await _post(db, org, user, "k", "x")
    with pytest.raises(Conflict):
        await first
    assert duplicate.replayed is False
    assert await _counts(db, org) == (1, 1)


async def test_without_a_key_every_call_does_the_work(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    a = await _post(db, org, user, None, "x")
    b = await _post(db, org, user, None, "x")
    assert a.body["id"] != b.body["id"] and not a.replayed and not b.replayed
    assert await _counts(db, org) == (2, 0)


class _Reversed:
    """An AnswerBox that is easy to see through: it stores the body's JSON reversed."""

    def seal(self, body):
        return {"sealed": json.dumps(body)[::-1]}

    def unseal(self, stored):
        return json.loads(stored["sealed"][::-1])


async def test_a_box_seals_the_stored_answer_and_unseals_the_replay(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    first = await _post(db, org, user, "k", "secret", box=_Reversed())
    async with db.transaction(organization_id=org) as s:
        stored = await s.scalar(
            select(idempotency_keys.c.response).where(idempotency_keys.c.organization_id == org)
        )
    assert "secret" not in json.dumps(stored)
    again = await _post(db, org, user, "k", "secret", box=_Reversed())
    assert again.replayed and again.body == first.body


async def test_stored_peeks_at_a_finished_answer_without_claiming_the_key(db):
    org, user = uuid.uuid4(), uuid.uuid4()
    fp = fingerprint("POST", "/notes", {"body": "x"})

    async def peek(key, fp=fp, box=None):
        async with db.transaction(organization_id=org) as s:
            return await IdempotencyGuard(s, org, user, key, fp, box=box).stored()

    assert await peek("k") is None and await peek(None) is None
    assert await _counts(db, org) == (0, 0)  # a peek claims nothing
    first = await _post(db, org, user, "k", "x", box=_Reversed())
    assert await peek("k", box=_Reversed()) == (201, first.body)
    with pytest.raises(InvalidInput):
        await peek("k", fingerprint("POST", "/notes", {"body": "y"}))
    # A claim still in progress (uncommitted, or committed without its answer): nothing.
    async with db.transaction(organization_id=org) as s:
        await s.execute(
            idempotency_keys.insert().values(
                organization_id=org, principal_id=user, key="busy", fingerprint=fp
            )
        )
    assert await peek("busy") is None


def test_a_key_longer_than_allowed_is_refused():
    with pytest.raises(InvalidInput):
        IdempotencyGuard(None, uuid.uuid4(), uuid.uuid4(), "k" * 201, "fp")  # type: ignore[arg-type]
