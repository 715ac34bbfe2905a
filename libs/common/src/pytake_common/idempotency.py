"""``Idempotency-Key`` for creating POSTs: a retry returns the first answer.

The key row is inserted first in the same transaction as the work. A
concurrent duplicate blocks on the primary key until the first commits, then
finds the stored answer and replays it; a key reused with a different body is
refused (422). Keys are scoped to (organization, principal).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput, UnprocessableState
from pytake_common.mechanics import idempotency_keys

MAX_KEY_LENGTH = 200


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
        return row.status_code, row.response

    async def store(self, status_code: int, body: Any) -> None:
        if self.key is None:
            return
        await self.session.execute(
            update(idempotency_keys)
            .where(self.where)
            .values(status_code=status_code, response=body)
        )
