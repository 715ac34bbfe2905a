"""``Idempotency-Key`` for creating POSTs: a retry returns the first answer.

The key row is inserted first in the same transaction as the work. A
concurrent duplicate blocks on the primary key until the first commits, then
finds the stored answer and replays it; a key reused with a different body is
refused (422). Keys are scoped to (organization, principal).

A route says it in one call, inside the transaction that does the work::

    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(guard, 201, lambda: departments.create(session, org, body))
    return answer.response()
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, NamedTuple, Protocol

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput, UnprocessableState
from pytake_common.mechanics import idempotency_keys

MAX_KEY_LENGTH = 200

#: the optional request header of a creating POST (``idempotency_key: IdempotencyKey = None``)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


class AnswerBox(Protocol):
    """Keeps a stored answer unreadable at rest (e.g. one holding live tokens)."""

    def seal(self, body: Any) -> Any: ...

    def unseal(self, stored: Any) -> Any: ...


def fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps([method, path, body], sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


class IdempotencyGuard:
    def __init__(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        principal_id: uuid.UUID,
        key: str | None,
        fp: str,
        *,
        box: AnswerBox | None = None,
    ) -> None:
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
            raise InvalidInput(f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
        self.session = session
        self.where = (
            (idempotency_keys.c.organization_id == organization_id)
            & (idempotency_keys.c.principal_id == principal_id)
            & (idempotency_keys.c.key == (key or ""))
        )
        self.values = {
            "organization_id": organization_id,
            "principal_id": principal_id,
            "key": key,
            "fingerprint": fp,
        }
        self.key = key
        self.box = box

    async def stored(self) -> tuple[int, Any] | None:
        """The finished answer stored for this key, read without claiming it; None when
        there is none yet (no key, never used, or still in progress).

        For a route that must do something costly or outside the transaction before
        its work (ask a remote API): a retry of a finished call replays its answer
        first, and only a new claim pays. A key reused with another request is refused
        (422), as :meth:`claim` does.
        """
        if self.key is None:
            return None
        row = (
            await self.session.execute(
                select(
                    idempotency_keys.c.fingerprint,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(self.where)
            )
        ).first()
        if row is None or row.status_code is None:
            return None
        if row.fingerprint != self.values["fingerprint"]:
            raise InvalidInput("Idempotency-Key was already used with a different request")
        return row.status_code, self.box.unseal(row.response) if self.box else row.response

    async def claim(self) -> tuple[int, Any] | None:
        """Return the stored (status, body) for a replay, or None when this call owns the key."""
        if self.key is None:
            return None
        inserted = await self.session.execute(
            pg_insert(idempotency_keys)
            .values(**self.values)
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        )
        if inserted.first() is not None:
            return None
        row = (
            await self.session.execute(
                select(
                    idempotency_keys.c.fingerprint,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(self.where)
            )
        ).one()
        if row.fingerprint != self.values["fingerprint"]:
            raise InvalidInput("Idempotency-Key was already used with a different request")
        if row.status_code is None:
            raise UnprocessableState("a request with this Idempotency-Key is still in progress")
        return row.status_code, self.box.unseal(row.response) if self.box else row.response

    async def store(self, status_code: int, body: Any) -> None:
        if self.key is None:
            return
        await self.session.execute(
            update(idempotency_keys)
            .where(self.where)
            .values(status_code=status_code, response=self.box.seal(body) if self.box else body)
        )


class Answer(NamedTuple):
    """What a creating POST answers: fresh, or replayed from the first call with its key."""

    status: int
    body: Any
    replayed: bool

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=headers)


async def idempotent(
    guard: IdempotencyGuard, status: int, produce: Callable[[], Awaitable[Any]]
) -> Answer:
    """Claim the key, then replay the stored answer or ``produce`` one and store it.

    Call it inside the transaction that does the work, with the guard on that
    transaction's session, and never commit in ``produce``: the claim, the work and the
    stored answer then commit together or not at all. An exception from ``produce``
    propagates and rolls the claim back with the work, so a failed attempt stores
    nothing and a retry runs again. ``produce`` returns a pydantic model (dumped as JSON)
    or JSON-ready data; ``status`` is what a fresh answer is sent with.
    """
    if (stored := await guard.claim()) is not None:
        return Answer(*stored, replayed=True)
    result = await produce()
    body = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    await guard.store(status, body)
    return Answer(status, body, replayed=False)
