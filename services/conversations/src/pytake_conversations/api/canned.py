"""Canned responses: per-organization reply snippets with placeholders.

Admins manage them; every role reads them; agents use them with ``canned_response_id``
when replying.
"""

import re
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from pytake_common.errors import NotFound
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import decode_cursor, encode_cursor
from pytake_common.security import Admin, Reader
from pytake_conversations.api.deps import DB, Limit
from pytake_conversations.domain import InvalidPlaceholder, ShortcodeTaken, unknown_placeholders
from pytake_conversations.tables import canned_responses

router = APIRouter(prefix="/v1/canned-responses", tags=["canned responses"])
SHORTCODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _check_body(body: str) -> str:
    if not body.strip():
        raise ValueError("body must not be blank")
    unknown = unknown_placeholders(body)
    if unknown:
        raise InvalidPlaceholder(
            f"unknown placeholders: {', '.join(unknown)}", placeholders=unknown
        )
    return body


def _check_shortcode(value: str) -> str:
    if not SHORTCODE.match(value):
        raise ValueError("shortcode: letters, digits, '_' and '-', at most 64")
    return value


class CannedInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcode: str
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4096)

    _shortcode = field_validator("shortcode")(_check_shortcode)


class CannedPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcode: str | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("shortcode")
    @classmethod
    def _shortcode(cls, value: str | None) -> str | None:
        return None if value is None else _check_shortcode(value)


class CannedResponse(BaseModel):
    id: uuid.UUID
    shortcode: str
    title: str
    body: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class CannedPage(BaseModel):
    items: list[CannedResponse]
    next_cursor: str | None


@router.get("", response_model=CannedPage)
async def list_canned(
    principal: Reader,
    db: DB,
    q: Annotated[str | None, Query(max_length=64, description="shortcode prefix")] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> CannedPage:
    """Newest first."""
    org = principal.organization_id
    stmt = select(canned_responses).where(canned_responses.c.organization_id == org)
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(canned_responses.c.shortcode).like(escaped + "%"))
    if cursor:
        stmt = stmt.where(
            tuple_(canned_responses.c.created_at, canned_responses.c.id)
            < tuple_(*decode_cursor(cursor))
        )
    stmt = stmt.order_by(canned_responses.c.created_at.desc(), canned_responses.c.id.desc())
    async with db.transaction(organization_id=org) as session:
        rows = (await session.execute(stmt.limit(limit + 1))).mappings().all()
    items = [CannedResponse.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return CannedPage(
        items=items,
        next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None,
    )


@router.post("", status_code=201, response_model=CannedResponse)
async def create_canned(
    body: CannedInput,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _check_body(body.body)
    org = principal.organization_id
    fp = fingerprint("POST", "/v1/canned-responses", body.model_dump())
    try:
        async with db.transaction(organization_id=org) as session:
            guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

            async def insert() -> CannedResponse:
                row = (
                    (
                        await session.execute(
                            canned_responses.insert()
                            .values(
                                id=uuid.uuid4(),
                                organization_id=org,
                                created_by=principal.user_id,
                                **body.model_dump(),
                            )
                            .returning(*canned_responses.c)
                        )
                    )
                    .mappings()
                    .one()
                )
                return CannedResponse.model_validate(dict(row))

            answer = await idempotent(guard, 201, insert)
    except IntegrityError as exc:
        raise ShortcodeTaken(f"shortcode {body.shortcode!r} is already used") from exc
    return answer.response()


@router.get("/{canned_id}", response_model=CannedResponse)
async def get_canned(canned_id: uuid.UUID, principal: Reader, db: DB) -> CannedResponse:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = (
            (
                await session.execute(
                    select(canned_responses).where(
                        canned_responses.c.id == canned_id,
                        canned_responses.c.organization_id == org,
                    )
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound("canned response not found")
    return CannedResponse.model_validate(dict(row))


@router.patch("/{canned_id}", response_model=CannedResponse)
async def patch_canned(
    canned_id: uuid.UUID, body: CannedPatch, principal: Admin, db: DB
) -> CannedResponse:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "body" in changes:
        _check_body(changes["body"])
    org = principal.organization_id
    try:
        async with db.transaction(organization_id=org) as session:
            row = (
                (
                    await session.execute(
                        update(canned_responses)
                        .where(
                            canned_responses.c.id == canned_id,
                            canned_responses.c.organization_id == org,
                        )
                        .values(updated_at=func.now(), **changes)
                        .returning(*canned_responses.c)
                    )
                )
                .mappings()
                .first()
            )
    except IntegrityError as exc:
        raise ShortcodeTaken(f"shortcode {body.shortcode!r} is already used") from exc
    if row is None:
        raise NotFound("canned response not found")
    return CannedResponse.model_validate(dict(row))


@router.delete("/{canned_id}", status_code=204)
async def delete_canned(canned_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        deleted = await session.scalar(
            delete(canned_responses)
            .where(canned_responses.c.id == canned_id, canned_responses.c.organization_id == org)
            .returning(canned_responses.c.id)
        )
    if deleted is None:
        raise NotFound("canned response not found")
    return Response(status_code=204)
