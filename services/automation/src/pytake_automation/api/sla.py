"""``/v1/automation/sla-policies``: org_admins manage SLA policies; every role reads them."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_automation import sla_policies
from pytake_automation.sla_policies import Policy, PolicyCreate, PolicyPatch
from pytake_common.db import Database
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Admin, Reader
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]
#: SLA policies, by (created_at, id)
POLICIES = keyset("sla-policies", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/automation/sla-policies", tags=["sla"])


class PolicyPage(BaseModel):
    items: list[Policy]
    next_cursor: str | None


@router.get("", response_model=PolicyPage)
async def list_policies(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PolicyPage:
    after = POLICIES.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await sla_policies.list_page(session, org, limit, after)
    next_cursor = POLICIES.encode((items[-1].created_at, items[-1].id)) if more else None
    return PolicyPage(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Policy,
    responses={409: {"description": "a default policy exists (`default_policy_exists`)"}},
)
async def create_policy(
    body: PolicyCreate,
    request: Request,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp)
        answer = await idempotent(guard, 201, lambda: sla_policies.create(session, org, user, body))
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("/{policy_id}", response_model=Policy)
async def get_policy(policy_id: uuid.UUID, principal: Reader, db: DB) -> Policy:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await sla_policies.load(session, principal.organization_id, policy_id)


@router.patch("/{policy_id}", response_model=Policy)
async def patch_policy(policy_id: uuid.UUID, body: PolicyPatch, principal: Admin, db: DB) -> Policy:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await sla_policies.patch(session, org, principal.user_id, policy_id, body)


@router.delete("/{policy_id}", status_code=204, response_class=Response)
async def delete_policy(policy_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await sla_policies.remove(session, org, principal.user_id, policy_id)
    return Response(status_code=204)
