"""``/v1/departments``: CRUD, members and routing (org_admin writes, everyone reads)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import decode_cursor, encode_cursor
from pytake_common.security import Admin, Reader
from pytake_tenants import departments
from pytake_tenants.api.deps import DB

router = APIRouter(prefix="/v1/departments", tags=["departments"])


class DepartmentPage(BaseModel):
    items: list[departments.Department]
    next_cursor: str | None


@router.get("", response_model=DepartmentPage)
async def list_departments(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DepartmentPage:
    after = decode_cursor(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await departments.list_page(session, org, limit, after)
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return DepartmentPage(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=departments.Department,
    responses={
        402: {"description": "The plan's department limit is reached (plan_limit_exceeded)"},
        409: {"description": "A department with this name exists"},
    },
)
async def create_department(
    body: departments.DepartmentCreate,
    request: Request,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    org = principal.organization_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(guard, 201, lambda: departments.create(session, org, body))
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("/{department_id}", response_model=departments.Department)
async def get_department(
    department_id: uuid.UUID, principal: Reader, db: DB
) -> departments.Department:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await departments.load(session, principal.organization_id, department_id)


@router.patch("/{department_id}", response_model=departments.Department)
async def patch_department(
    department_id: uuid.UUID, body: departments.DepartmentPatch, principal: Admin, db: DB
) -> departments.Department:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await departments.patch(session, principal.organization_id, department_id, body)


@router.delete("/{department_id}", status_code=204)
async def delete_department(department_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    async with db.transaction(organization_id=principal.organization_id) as session:
        await departments.remove(session, principal.organization_id, department_id)
    return Response(status_code=204)
