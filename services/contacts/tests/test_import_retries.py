"""A batch PostgreSQL rolled back to break a deadlock is applied again, whole; any other
database error still ends the import (fast unit tests of the retry rule)."""

import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from pytake_contacts import importer as importer_module
from pytake_contacts.importer import Importer, Outcome, Parsed


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _importer(monkeypatch, failures: list[Exception]) -> tuple[Importer, list[int]]:
    principal = SimpleNamespace(organization_id=uuid.uuid4())
    imp = Importer(None, None, principal, None, {})  # type: ignore[arg-type]
    calls: list[int] = []

    async def apply(batch: list[Parsed]) -> Outcome:
        calls.append(len(batch))
        if failures:
            raise failures.pop(0)
        return Outcome(created=len(batch))

    async def no_pause(_s: float) -> None:
        return None

    monkeypatch.setattr(imp, "_apply", apply)
    monkeypatch.setattr(importer_module.asyncio, "sleep", no_pause)
    return imp, calls


def _batch(n: int) -> list[Parsed]:
    return [Parsed(i, f"+5511900{i:05}", f"5511900{i:05}", {}, {}) for i in range(n)]


def _db_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT …", {}, _PgError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_batch_aborted_by_a_deadlock_is_applied_again(monkeypatch, sqlstate):
    imp, calls = _importer(monkeypatch, [_db_error(sqlstate), _db_error(sqlstate)])
    imp.pending = {p.wa_id: p for p in _batch(3)}
    await imp.flush()
    assert calls == [3, 3, 3]  # the whole batch each time, applied on the third try
    assert imp.result().created == 3 and imp.result().failed == []


async def test_gives_up_after_the_last_attempt(monkeypatch):
    errors: list[Exception] = [_db_error("40P01") for _ in range(importer_module.BATCH_ATTEMPTS)]
    imp, calls = _importer(monkeypatch, errors)
    imp.pending = {p.wa_id: p for p in _batch(2)}
    with pytest.raises(DBAPIError):
        await imp.flush()
    assert len(calls) == importer_module.BATCH_ATTEMPTS


async def test_other_database_errors_are_not_retried(monkeypatch):
    imp, calls = _importer(monkeypatch, [_db_error("53300")])  # too_many_connections
    imp.pending = {p.wa_id: p for p in _batch(2)}
    with pytest.raises(DBAPIError):
        await imp.flush()
    assert calls == [2]


async def test_a_conflict_still_replays_row_by_row(monkeypatch):
    conflict = IntegrityError("INSERT …", {}, _PgError("23505"))
    imp, calls = _importer(monkeypatch, [conflict])
    imp.pending = {p.wa_id: p for p in _batch(3)}
    await imp.flush()
    assert calls == [3, 1, 1, 1]
    assert imp.result().created == 3
