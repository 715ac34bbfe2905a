"""``/v1/webhook-endpoints``: org_admins manage endpoints; every role reads them."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Admin, Reader
from pytake_integrations import endpoints
from pytake_integrations.api.deps import DB, Answers, Box, Policy

#: The plan limit on endpoints (tenants' plans; read from its organization events).
PLAN_LIMIT = "webhook_endpoints"
#: webhook endpoints, by (created_at, id)
ENDPOINTS = keyset("webhook-endpoints", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhook-endpoints"])


class EndpointPage(BaseModel):
    items: list[endpoints.Endpoint]
    next_cursor: str | None


@router.get("", response_model=EndpointPage)
async def list_endpoints(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EndpointPage:
    after = ENDPOINTS.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await endpoints.list_page(session, org, limit, after)
    next_cursor = ENDPOINTS.encode((items[-1].created_at, items[-1].id)) if more else None
    return EndpointPage(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=endpoints.EndpointWithSecret,
    responses={402: {"description": "The plan's endpoint limit is reached (plan_limit_exceeded)"}},
)
async def create_endpoint(
    body: endpoints.EndpointCreate,
    request: Request,
    principal: Admin,
    db: DB,
    box: Box,
    answers: Answers,
    policy: Policy,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The answer holds the signing ``secret``: it is shown this once."""
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp, box=answers)

        async def produce() -> endpoints.EndpointWithSecret:
            used = await endpoints.count(session, org)
            await request.app.state.organizations.check_limit(org, PLAN_LIMIT, used=used)
            return await endpoints.create(session, box, org, user, body, policy)

        answer = await idempotent(guard, 201, produce)
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("/{endpoint_id}", response_model=endpoints.Endpoint)
async def get_endpoint(endpoint_id: uuid.UUID, principal: Reader, db: DB) -> endpoints.Endpoint:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await endpoints.get(session, principal.organization_id, endpoint_id)


@router.patch("/{endpoint_id}", response_model=endpoints.Endpoint)
async def patch_endpoint(
    endpoint_id: uuid.UUID,
    body: endpoints.EndpointPatch,
    principal: Admin,
    db: DB,
    policy: Policy,
) -> endpoints.Endpoint:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await endpoints.patch(session, org, principal.user_id, endpoint_id, body, policy)


@router.delete("/{endpoint_id}", status_code=204, response_class=Response)
async def delete_endpoint(endpoint_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await endpoints.remove(session, org, principal.user_id, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=endpoints.EndpointWithSecret)
async def rotate_secret(
    endpoint_id: uuid.UUID,
    request: Request,
    principal: Admin,
    db: DB,
    box: Box,
    body: endpoints.RotateSecret | None = None,
) -> endpoints.EndpointWithSecret:
    """A new secret, shown once; the previous one also signs for ``overlap_s`` (default 24 h)."""
    overlap = body.overlap_s if body and body.overlap_s is not None else None
    if overlap is None:
        overlap = request.app.state.settings.rotation_overlap_s
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await endpoints.rotate_secret(
            session, box, org, principal.user_id, endpoint_id, overlap
        )
