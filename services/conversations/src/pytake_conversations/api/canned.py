"""Canned responses: per-organization reply snippets with placeholders.

Admins manage them; every role reads them; agents use them with ``canned_response_id``
when replying (the rules are :mod:`pytake_conversations.canned`').
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.security import Admin, Reader
from pytake_conversations import canned
from pytake_conversations.api.deps import DB, Limit
from pytake_conversations.canned import CannedInput, CannedPatch, CannedResponse
from pytake_conversations.domain import ShortcodeTaken

router = APIRouter(prefix="/v1/canned-responses", tags=["canned responses"])


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
    async with db.transaction(organization_id=org) as session:
        items, next_cursor = await canned.list_page(session, org, q, limit, cursor)
    return CannedPage(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, response_model=CannedResponse)
async def create_canned(
    body: CannedInput,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    canned.check_body(body.body)
    org = principal.organization_id
    fp = fingerprint("POST", "/v1/canned-responses", body.model_dump())
    try:
        async with db.transaction(organization_id=org) as session:
            guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
            answer = await idempotent(
                guard, 201, lambda: canned.create(session, org, principal.user_id, body)
            )
    except IntegrityError as exc:
        raise ShortcodeTaken(f"shortcode {body.shortcode!r} is already used") from exc
    return answer.response()


@router.get("/{canned_id}", response_model=CannedResponse)
async def get_canned(canned_id: uuid.UUID, principal: Reader, db: DB) -> CannedResponse:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await canned.load(session, org, canned_id)


@router.patch("/{canned_id}", response_model=CannedResponse)
async def patch_canned(
    canned_id: uuid.UUID, body: CannedPatch, principal: Admin, db: DB
) -> CannedResponse:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "body" in changes:
        canned.check_body(changes["body"])
    org = principal.organization_id
    try:
        async with db.transaction(organization_id=org) as session:
            return await canned.patch(session, org, canned_id, changes)
    except IntegrityError as exc:
        raise ShortcodeTaken(f"shortcode {body.shortcode!r} is already used") from exc


@router.delete("/{canned_id}", status_code=204)
async def delete_canned(canned_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await canned.remove(session, org, canned_id)
    return Response(status_code=204)
